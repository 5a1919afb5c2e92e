"""The README's tour runs as written: every `myna` command in its shell blocks, in order, in a
fresh data folder with the default model, and what the README says of the answers holds.
(`make chat` and `make test` are CI's own run; the app has its pilot tests.)"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MYNA

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line, comments=True) for line in lines if line.startswith("myna ")]


def test_the_readme_stays_short_and_its_links_lead_somewhere():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
    assert len(readme_commands()) >= 8, "the tour's commands are in ```sh blocks"


@pytest.mark.real
def test_every_command_of_the_readme_tour_runs(tmp_path, shared_base):
    (tmp_path / "docs").symlink_to(REPO / "docs")  # the tour's paths are relative to the checkout
    said = {}
    for command in readme_commands():
        done = subprocess.run([MYNA, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{shlex.join(command)}: {done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, shlex.join(command)
        said[tuple(command)] = done.stdout
    answers = {command[-1]: out for command, out in said.items() if command[1] == "ask"}
    assert "Biscuit" in answers["What's my dog called?"], "the answer comes from what was said"
    assert answers["What is my cat's name?"].startswith("I don't know yet")
    assert "Okafor" in answers["When is my dentist appointment?"].split("Sources:")[1], "the note is the source"
    assert "personal" in said[("myna", "adapters", "list")], "myna train made the personal adapter"
    exported = {p.name for p in (tmp_path / "my-myna").iterdir()}
    assert {"adapter.gguf", "Modelfile", "serve.sh", "DATA_CARD.md"} <= exported
    card = (tmp_path / "my-myna" / "DATA_CARD.md").read_text()
    assert re.search(r"AUROC \*\*\d\.\d\d\*\* on \d+ trained-on texts against \d+ held-out", card), (
        "the card states the membership-inference figure with its reference"
    )
    assert "The base model alone, on the same texts:" in card
