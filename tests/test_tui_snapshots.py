"""What the chat app looks like, screen by screen, compared with the accepted pictures in
tests/__snapshots__ (pytest-textual-snapshot). After a deliberate change of the look, look at
the differences (`pytest tests/test_tui_snapshots.py` writes a report) and accept them with
`pytest tests/test_tui_snapshots.py --snapshot-update`."""

import os

import pytest

from assistant.memory import ingest
from assistant.store import conversations as convs
from tests.test_tui import wait_until
from tui.app import MynaApp
from tui.widgets.conversation_list import ConversationList

REPLY = """Three things help tomatoes most:

1. **Sun**: six hours a day at least.
2. **Water** at the roots, in the morning.

```python
water(liters=2)
```"""


@pytest.fixture
def chatted(db, fake_engine, tmp_path):
    """A user with two notes and one answered question, whose reply used them."""
    for name, text in (("garden.txt", "The tomatoes by the south wall get the most sun."), ("todo.md", "Water.")):
        note = tmp_path / name
        note.write_text(text)
        os.utime(note, (1_699_963_200, 1_699_963_200))  # noon UTC: the same date in any time zone
    ingest.import_paths(db, [tmp_path / "garden.txt", tmp_path / "todo.md"])
    fake_engine.queue(REPLY)
    return fake_engine


def app_for(engine) -> MynaApp:
    return MynaApp(engine_factory=lambda settings: engine)


async def ready(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.engine is not None)
    pilot.app.query_one("#prompt").cursor_blink = False  # a blinking cursor is there or not by the clock
    await pilot.pause()


async def answered(pilot) -> None:
    await ready(pilot)
    await pilot.click("#prompt")
    await pilot.press(*"Where do the tomatoes get the most sun?", "enter")
    await wait_until(pilot, lambda: convs.latest_conversation_id(pilot.app.db) and not pilot.app.replying)
    await wait_until(pilot, lambda: pilot.app.query_one(ConversationList).settled)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (150, 45)], ids=["80x24", "150x45"])
def test_the_main_screen(snap_compare, chatted, size):
    assert snap_compare(app_for(chatted), terminal_size=size, run_before=answered)


def test_the_welcome(snap_compare, db, fake_engine):
    assert snap_compare(app_for(fake_engine), terminal_size=(110, 36), run_before=ready)


def after_key(key: str, shown: str):
    """Ready, then `key` pressed, until the screen it opens shows `shown`."""

    async def run_before(pilot) -> None:
        await ready(pilot)
        await pilot.press(key)
        await wait_until(pilot, lambda: pilot.app.screen.query(shown))
        await pilot.pause()

    return run_before


def test_the_memory_screen(snap_compare, chatted):
    assert snap_compare(app_for(chatted), terminal_size=(110, 36), run_before=after_key("f3", "#memory-list ListItem"))


def test_the_personalize_screen(snap_compare, db, fake_engine):
    assert snap_compare(app_for(fake_engine), terminal_size=(110, 36), run_before=after_key("f4", "#runs"))
