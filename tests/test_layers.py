"""The architecture's rules, checked: imports point one way, and chatting never loads torch."""

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO, run_env

# A package may import only the packages listed for it (and itself).
ALLOWED = {
    "assistant": set(),
    "merger": {"assistant"},
    "tui": {"assistant", "merger"},
    "cli": {"assistant", "merger", "tui", "bench"},
    "bench": {"assistant", "merger"},
}


def imported_packages(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    ours = set(ALLOWED)
    for path in (REPO / package).rglob("*.py"):
        for name in imported_packages(path):
            if name in ours and name != package:
                assert name in ALLOWED[package], f"{path.relative_to(REPO)} imports {name}"


BLOCK_TORCH = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("the chat path must not import torch")
sys.meta_path.insert(0, BlockTorch())
sys.argv = ["myna"] + sys.argv[1:]
from cli.main import main
main()
"""


@pytest.mark.real
def test_ask_never_imports_torch(myna_home):
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "ask", "--max-tokens", "8", "Say hello."],
        env=run_env(myna_home), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_chat_app_modules_never_import_torch():
    code = "import sys, tui.app, assistant.engine, assistant.replies, cli.main; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_store_loads_without_pandas_but_pandas_still_works():
    code = (
        "import sys, assistant.store; print('pandas' in sys.modules); "
        "import pandas; print(pandas.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "pandas"], result.stderr
