"""The architecture's rules, checked: imports point one way, and chatting never loads torch."""

import ast
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, run_env

# A package may import only the packages listed for it (and itself).
ALLOWED = {
    "assistant": set(),
    "merger": {"assistant"},
    "tui": {"assistant", "merger"},  # tui.cli is the `myna` command; the rest of tui is the app
    "bench": {"assistant", "merger"},
}

# Rooms inside a package, and the rooms each may import (its own always).
ROOMS = {
    "merger": {
        "formats": set(),
        "data": set(),
        "training": {"formats", "data"},
        "search": {"formats", "data", "training"},
        "cluster": set(),  # units of work, here or on Ray
        "hub": {"formats", "data", "training", "cluster"},
        "nightly": {"formats", "data", "training", "search", "hub"},
    },
}


def module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in ALLOWED for path in (REPO / package).rglob("*.py")}


def imports_of(module):
    """The project's modules `module` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from merger.search import scoring` imports a module; `from x.y import name`, x.y.
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    for module in MODULES:
        if module.split(".")[0] != package:
            continue
        for name in imports_of(module):
            target = name.split(".")[0]
            assert target == package or target in ALLOWED[package], f"{module} imports {name}"


@pytest.mark.parametrize("package", sorted(ROOMS))
def test_rooms_import_only_the_rooms_below_them(package):
    rooms = ROOMS[package]
    assert {p.name for p in (REPO / package).iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(rooms)
    loose = sorted(p.name for p in (REPO / package).glob("*.py") if p.name != "__init__.py")
    assert not loose, f"{package}/ holds modules outside its rooms: {loose}"
    for module in MODULES:
        parts = module.split(".")
        if parts[0] != package or len(parts) < 3:
            continue
        for name in imports_of(module):
            other = name.split(".")
            if other[0] == package and len(other) > 1 and other[1] != parts[1]:
                assert other[1] in rooms[parts[1]], f"{module} imports {name}: {parts[1]} may not import {other[1]}"


def test_the_app_never_imports_the_command_line():
    for module in MODULES:
        if module.startswith("tui.") and not module.startswith("tui.cli"):
            assert not {n for n in imports_of(module) if n.startswith("tui.cli")}, f"{module} imports tui.cli"


def cycles(graph):
    """Groups of modules that import each other, directly or through others (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_anywhere():
    graph = {module: imports_of(module) for module in MODULES}
    assert sum(map(len, graph.values())) > 200  # the graph is the project's, not an empty one
    assert cycles(graph) == []


BLOCK_TORCH = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "sentence_transformers", "ray"):
            raise ImportError("the chat path must not import torch or Ray")
sys.meta_path.insert(0, BlockTorch())
sys.argv = ["myna"] + sys.argv[1:]
from tui.cli.main import main
main()
"""


@pytest.mark.real
def test_ask_never_imports_torch(myna_home):
    # The first ask leaves a memory (what the user said), so the second embeds its question
    # and searches: the memory path runs too, on ONNX Runtime.
    for prompt in ("I keep bees on my roof.", "Tell me about my bees."):
        result = subprocess.run(
            [sys.executable, "-c", BLOCK_TORCH, "ask", "--max-tokens", "8", "--sources", prompt],
            env=run_env(myna_home),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip()
    assert "bees on my roof" in result.stdout  # the remembered note is shown as a source


def test_chat_app_modules_never_import_torch():
    code = "import sys, tui.app, assistant.engine, assistant.replies, tui.cli.main; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_nothing_imports_ray_unless_given_a_cluster():
    """Ray is an extra: the hub build and the benchmark import it only with --ray."""
    code = (
        "import sys, tui.cli.main, merger.hub.build, merger.cluster.units, bench.lamp.run, bench.cluster;"
        "print('ray' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.stdout.strip() == "False", result.stderr


def test_store_loads_without_pandas_or_numpy_but_both_still_work():
    # The chat window's first frame and the cold `myna ask` do not wait for them.
    code = (
        "import sys, assistant.store, tui.app; print('pandas' in sys.modules, 'numpy' in sys.modules);"
        "import pandas, numpy; print(pandas.__name__, numpy.zeros(2).sum())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False", "pandas", "0.0"], result.stderr


def test_myna_writes_with_sql_not_with_sqlite_utils_table_api():
    """sqlite-utils loads without NumPy or pandas (assistant/__init__.py), so its insert and
    upsert, which map their value types to columns, must not be used."""
    used = [
        f"{path}: {line.strip()}"
        for package in ("assistant", "merger", "tui", "bench")
        for path in sorted((REPO / package).rglob("*.py"))
        for line in path.read_text().splitlines()
        if re.search(r"\]\.(insert|insert_all|upsert|upsert_all|create)\(|\.table\(", line)
    ]
    assert used == []
