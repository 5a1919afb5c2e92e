"""The model catalogue: manifests in assistant/models/ (package data), plus any local llama GGUF file given by path.

A manifest says where a model's file comes from and what it must hash to; the file itself
is never in the repository.
"""

from __future__ import annotations

import importlib.util
import tomllib
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import MynaError
from assistant.hashing import cached_sha256

MODELS_DIR = Path(__file__).resolve().parent / "models"
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    sha256: str | None = None  # expected digest; None for a file given by path
    chat_template: str | None = None  # None: use the template inside the GGUF file
    context_length: int | None = None
    description: str = ""
    license: str | None = None
    install_hint: str | None = None


def manifests() -> list[ModelSpec]:
    return [_from_manifest(path) for path in sorted(MODELS_DIR.glob("*.toml"))]


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
        raise MynaError(f"{spec.path} is not a GGUF model file; Myna runs llama-family models in GGUF format.")
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


def _from_manifest(manifest_path: Path) -> ModelSpec:
    data = tomllib.loads(manifest_path.read_text())
    source = data["source"]
    return ModelSpec(
        name=data["name"],
        path=_package_file(source["python_package"], source["file"]),
        sha256=data.get("sha256"),
        chat_template=data.get("chat", {}).get("template"),
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
