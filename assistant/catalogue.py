"""The model catalogue: the manifests in models/ (a wheel carries them as assistant/models/),
the models the user registered (`myna models add FILE`: manifests in the data folder), and
any GGUF file given by path.

A manifest says where a model's file comes from, what it must hash to, its architecture and,
where the file has none, its chat template and stop tokens; the file itself is never in the
repository.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import MynaError
from assistant.hashing import cached_sha256

_PACKAGED = Path(__file__).resolve().parent / "models"  # in a wheel (setup.py copies them there)
MODELS_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parent.parent / "models"
GGUF_MAGIC = b"GGUF"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    sha256: str | None = None  # expected digest; None for a file given by path
    chat_template: str | None = None  # None: use the template inside the GGUF file
    stop: tuple[str, ...] = ()  # texts that end a reply, beside the model's end-of-turn tokens
    architecture: str | None = None
    registered: bool = False  # added by the user (`myna models add`), not shipped
    context_length: int | None = None
    description: str = ""
    license: str | None = None
    install_hint: str | None = None


def manifests() -> list[ModelSpec]:
    """The shipped catalogue, then what the user registered (a shipped name wins)."""
    shipped = [_from_manifest(path) for path in sorted(MODELS_DIR.glob("*.toml"))]
    taken = {spec.name for spec in shipped}
    return shipped + [spec for spec in _registered() if spec.name not in taken]


def user_models_dir() -> Path:
    from assistant.paths import data_dir

    return data_dir() / "models"


def _registered() -> list[ModelSpec]:
    out = []
    for path in sorted(user_models_dir().glob("*.toml")):
        try:
            out.append(_from_manifest(path, registered=True))
        except (OSError, ValueError, KeyError):  # a damaged manifest of the user's: skip it, not the catalogue
            continue
    return out


def register(path: Path, name: str | None = None) -> ModelSpec:
    """Add a local GGUF file to the user's catalogue: its checksum and architecture read from
    the file, so it can be chosen by name (`myna --model NAME`, `myna config set model NAME`)."""
    from assistant import gguf_file
    from assistant.atomic import atomic_write_text

    path = path.expanduser().resolve()
    spec = ModelSpec(name=path.name, path=path)
    verify(spec)  # a GGUF model, whole
    header = gguf_file.header(path)
    if header.file_type == "adapter":
        raise MynaError(f"{path} is a LoRA adapter, not a model; add the model it was made for.")
    name = name or re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-.") or "model"
    if not _NAME.match(name):
        raise MynaError(f"'{name}' cannot name a model: use lower-case letters, digits, '.', '-' or '_'.")
    if any(spec.name == name and not spec.registered for spec in manifests()):
        raise MynaError(f"'{name}' is a shipped model's name; choose another with --name.")
    lines = [
        f"name = {_toml(name)}",
        f"title = {_toml(header.name or path.stem)}",
        f"architecture = {_toml(header.architecture or 'unknown')}",
        f"size = {path.stat().st_size}",
        f"sha256 = {_toml(cached_sha256(path))}",
        "",
        "[source]",
        f"path = {_toml(str(path))}",
    ]
    if not header.chat_template:  # the file has none: the chat of a shipped model of its architecture
        kin = next((s for s in manifests() if not s.registered and s.architecture == header.architecture), None)
        if kin and kin.chat_template:
            lines += [
                "",
                f"[chat]  # from {kin.name}: the file has no chat template",
                f"template = {_toml(kin.chat_template)}",
            ]
            lines += [f"stop = [{', '.join(_toml(stop) for stop in kin.stop)}]"]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what is written reads back
    atomic_write_text(user_models_dir() / f"{name}.toml", text)
    return next(spec for spec in manifests() if spec.name == name)


def _toml(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def resolve(name_or_path: str) -> ModelSpec:
    """A catalogue name or a path to a GGUF file, as a ModelSpec (not yet verified)."""
    for spec in manifests():
        if spec.name == name_or_path:
            return spec
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".gguf" or path.exists() or "/" in name_or_path:
        return ModelSpec(name=path.name, path=path.resolve())
    known = ", ".join(spec.name for spec in manifests())
    raise MynaError(f"There is no model called '{name_or_path}'; use one of {known} or a path to a .gguf file.")


def verify(spec: ModelSpec) -> None:
    """Check the model file exists, is GGUF, and (for catalogue models) has the right digest."""
    hint = f" Reinstall it with `{spec.install_hint}`." if spec.install_hint else ""
    if spec.path.is_dir():
        raise MynaError(f"{spec.path} is a folder, not a model file; give the path of the .gguf file inside it.")
    if not spec.path.is_file():
        raise MynaError(f"The model file {spec.path} does not exist; pass another with --model PATH.{hint}")
    try:
        with open(spec.path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise MynaError(f"Cannot read the model file {spec.path} ({exc.strerror}); check its permissions.") from exc
    if magic != GGUF_MAGIC:
        raise MynaError(f"{spec.path} is not a GGUF model file; Myna runs models in GGUF format (llama.cpp's).")
    if spec.sha256 and cached_sha256(spec.path) != spec.sha256:
        raise MynaError(f"The model file {spec.path} is damaged (its checksum does not match).{hint}")
    if not spec.sha256:  # a file given by path: no checksum to compare, so read its structure
        from assistant import gguf_file

        problem = gguf_file.problem(spec.path)
        if problem:
            raise MynaError(
                f"{spec.path} is not a usable GGUF model: {problem}. Copy it again, or pass another with --model PATH."
            )


def fingerprint(spec: ModelSpec) -> str:
    """What identifies a base model for adapters: the SHA-256 of its GGUF file."""
    return spec.sha256 or cached_sha256(spec.path)


def _from_manifest(manifest_path: Path, registered: bool = False) -> ModelSpec:
    data = tomllib.loads(manifest_path.read_text())
    source = data["source"]
    if "path" in source:  # a file on this machine
        path = Path(source["path"])
    elif "assembled_in" in source:  # a package that assembles the file from parts (a model over PyPI's size limit)
        path = Path(source["assembled_in"]).expanduser() / source["file"]
    else:  # the file inside a package
        path = _package_file(source["python_package"], source["file"])
    chat = data.get("chat", {})
    return ModelSpec(
        name=data["name"],
        path=path,
        sha256=data.get("sha256"),
        chat_template=chat.get("template"),
        stop=tuple(chat.get("stop", ())),
        architecture=data.get("architecture"),
        registered=registered,
        context_length=data.get("context_length"),
        description=data.get("description", ""),
        license=data.get("license"),
        install_hint=source.get("install"),
    )


def _package_file(package: str, name: str) -> Path:
    # find_spec locates the package without importing it: the model package's own
    # __init__ needs a plugin host Myna does not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return Path(f"<{package} is not installed>") / name
    return Path(list(spec.submodule_search_locations)[0]) / name
