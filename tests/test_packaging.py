"""Myna as a package: the wheel installs and runs outside the checkout.

The wheel is built from the checkout, installed (without its dependencies) into a fresh
virtual environment that borrows this environment's third-party packages, and run from a
folder outside the checkout: so everything Myna needs at run time, the model catalogue
included, must be inside the wheel.
"""

import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, run_env

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy, so the build's own folders (build/, *.egg-info) never land in the checkout.
    source, out = tmp_path_factory.mktemp("source") / "myna", tmp_path_factory.mktemp("wheel")
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "bench", "tests", "build", "*.egg-info", "__pycache__", ".pytest_cache"
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("myna-*.whl")
    return path


def test_the_wheel_holds_three_packages_and_the_model_catalogue(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"assistant", "merger", "tui"}
    assert "assistant/models/smollm2-135m-instruct-q4_1.toml" in names, "setup.py copies models/ into the wheel"
    assert "assistant/models/gemma-3-270m-q4_k_m.toml" in names
    assert "tui/myna.tcss" in names and "tui/cli/main.py" in names
    assert not [n for n in names if n.startswith(("bench/", "tests/"))]


def test_the_installed_wheel_runs_outside_the_checkout(wheel, tmp_path, myna_home):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # The same third-party packages as this environment (torch, llama-cpp-python, ...), found
    # after the new environment's own: a path line in a .pth file, which does not run this
    # environment's own .pth files (the editable install's finder, pointing at the checkout).
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (purelib / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = run_env(myna_home)
    env.pop("PYTHONPATH", None)

    def run(*command):
        return subprocess.run(command, cwd=outside, env=env, capture_output=True, text=True, timeout=300)

    where = run(str(python), "-c", "import assistant.catalogue as c, tui.cli.main; print(c.MODELS_DIR)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(purelib), "Myna was imported from outside the wheel"

    myna = str(venv / "bin" / "myna")
    check = run(myna, "models", "check")
    assert check.returncode == 0, check.stderr
    assert "smollm2-135m-instruct-q4_1" in check.stdout
    listed = run(myna, "models", "list")
    assert "smollm2-135m-instruct-q4_1" in listed.stdout and "gemma-3-270m-q4_k_m" in listed.stdout, (
        "the catalogue of models/ travels in the wheel"
    )
    ask = run(myna, "ask", "--no-memory", "--max-tokens", "8", "Say hello.")
    assert ask.returncode == 0, ask.stderr
    assert ask.stdout.strip()
