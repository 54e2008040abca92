"""HyperReenact's modules import each other one way: the frame helpers have one home (``frames.py``), no project
import hides inside a function, there is no cycle, and every module imports first in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROJECT = REPO / "projects" / "hyperreenact"


def _project_imports(path: Path) -> tuple[set[str], list[str]]:
    """(project modules imported at module level, project modules imported inside functions) of one file."""
    tree = ast.parse(path.read_text())
    top, nested = set(), []

    def names(node) -> list[str]:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "projects.hyperreenact":
                return [f"projects.hyperreenact.{a.name}" for a in node.names]
            return [node.module]
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        return []

    for node in tree.body:
        for n in names(node):
            if n.startswith("projects.hyperreenact."):
                top.add(n.split(".")[2])
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                nested += [n for n in names(sub) if n.startswith("projects.hyperreenact")]
    return top, nested


def _graph() -> dict[str, set[str]]:
    graph = {}
    for f in sorted(PROJECT.glob("*.py")):
        top, nested = _project_imports(f)
        assert not nested, f"{f.name} imports {nested} inside a function (hides the order of the imports)"
        graph[f.stem] = top
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        if state.get(node) == "done":
            return None
        if state.get(node) == "open":
            return path + [node]
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            found = visit(dep, path + [node])
            if found:
                return found
        state[node] = "done"
        return None

    for node in graph:
        found = visit(node, [])
        if found:
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_project_imports_run_one_way():
    graph = _graph()
    assert graph["frames"] == set(), "frames.py is the bottom of the project: it imports no other project module"
    for user in ("data", "module", "inference", "preprocess"):
        assert "frames" in graph[user], f"{user}.py should take the frame helpers from frames.py"
    assert "inference" not in graph["data"] | graph["module"]  # the old hidden cycle: data/module <-> inference
    cycle = _cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"
    # each module first in a fresh set of project modules: no "partially initialised module" at import time
    code = (
        "import importlib, sys\n"
        f"for name in {sorted(graph)!r}:\n"
        "    for k in [k for k in sys.modules if k.startswith('projects.hyperreenact')]:\n"
        "        del sys.modules[k]\n"
        "    importlib.import_module('projects.hyperreenact.' + name)\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_frame_helpers_keep_their_old_addresses():
    from projects.hyperreenact import data, frames, inference

    for name in ("DrivingFrames", "FaceCropper", "to_tensor", "to_uint8", "open_driving", "grid_image"):
        assert getattr(inference, name) is getattr(frames, name)
    assert data.default_box is frames.default_box and data.default_lm5 is frames.default_lm5
