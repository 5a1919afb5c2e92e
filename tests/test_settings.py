import pytest

from assistant import settings
from assistant.errors import MynaError


def test_defaults_then_stored_values(db):
    assert settings.load(db) == settings.Settings()
    settings.set_value(db, "temperature", "0.5")
    settings.set_value(db, "max_tokens", "64")
    loaded = settings.load(db)
    assert (loaded.temperature, loaded.max_tokens) == (0.5, 64)
    assert settings.stored(db) == {"temperature": 0.5, "max_tokens": 64}
    settings.unset(db, "temperature")
    assert settings.load(db).temperature == settings.Settings().temperature


@pytest.mark.parametrize(
    "key, raw, message",
    [
        ("temperature", "hot", "not a valid float"),
        ("temperature", "3", "out of range"),
        ("context_size", "10", "out of range"),
        ("max_tokens", "1.5", "not a valid int"),
        ("system_prompt", "  ", "cannot be empty"),
        ("colour", "blue", "no setting 'colour'"),
        ("theme", "neon", "not a theme; choose one of textual-dark"),
    ],
)
def test_bad_values_are_refused_with_a_reason(db, key, raw, message):
    with pytest.raises(MynaError, match=message):
        settings.set_value(db, key, raw)
    assert settings.stored(db) == {}


def test_overrides_are_checked_too():
    base = settings.Settings()
    assert settings.with_overrides(base, max_tokens=10, temperature=None).max_tokens == 10
    with pytest.raises(MynaError, match="out of range"):
        settings.with_overrides(base, temperature=-1)
