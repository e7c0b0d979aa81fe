"""The package's shape: the import graph of `tara_batch/` has no cycle, and imports point down the layers only.

Every import counts, also the lazy ones inside functions: a lazy import hides a dependency from import time, not
from the design. Layers (tara_batch/__init__.py draws them); a module may import its own folder or a lower layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "tara_batch"

# Rank of each top-level entry of tara_batch/ (a folder or a module). Equal ranks may not import each other.
LAYERS: dict[str, int] = {
    "errors": 0, "schema": 0, "__init__": 0,
    "io": 1, "video": 1,
    "models": 2, "index": 2,
    "config": 3,
    "cluster": 4,
    "embed": 5, "search": 5, "train": 5,
    "eval": 6,
    "toyworld": 7,
    "serve": 7,
    "cli": 9,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # `from pkg import submodule` is an edge to the submodule, `from mod import name` to the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[mod].update(t for t in targets if t in modules and t != mod)
    return graph


def top(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports into another top-level entry of the same or a higher layer."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if top(a) != top(b) and LAYERS[top(b)] >= LAYERS[top(a)])


def test_every_top_level_entry_has_a_layer():
    entries = {p.stem for p in ROOT.iterdir() if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert entries == set(LAYERS), "add new folders/modules to LAYERS (and to the diagram in tara_batch/__init__.py)"


def test_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_imports_point_down_the_layers():
    assert upward(import_graph()) == []


def test_the_checks_can_fail():
    # Both checks on a made-up graph: a cycle inside io/, io -> embed (up), embed -> search (a peer) are reported;
    # embed -> io (down) and a same-folder import are not.
    graph = {"tara_batch.io.a": {"tara_batch.io.b", "tara_batch.embed.job"}, "tara_batch.io.b": {"tara_batch.io.a"},
             "tara_batch.embed.job": {"tara_batch.io.a", "tara_batch.search.session", "tara_batch.embed.stages"},
             "tara_batch.embed.stages": set(), "tara_batch.search.session": set()}
    assert cycles(graph) == [["tara_batch.embed.job", "tara_batch.io.a", "tara_batch.io.b"]]
    assert upward(graph) == ["tara_batch.embed.job -> tara_batch.search.session",
                             "tara_batch.io.a -> tara_batch.embed.job"]
    # and the real graph is found at all (a broken parser would make the two tests above pass on nothing)
    graph = import_graph()
    assert "tara_batch.video.pyav_sampler" in graph["tara_batch.video.registry"]
    assert "tara_batch.embed.stages" in graph["tara_batch.embed.dataset"]


@pytest.mark.parametrize("folder", sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()))
def test_every_folder_says_what_lives_there(folder):
    doc = ast.get_docstring(ast.parse((ROOT / folder / "__init__.py").read_text()))
    assert doc and len(doc.splitlines()) >= 3, f"tara_batch/{folder}/__init__.py needs a docstring: what, may import"


def test_modules_fit_in_a_head():
    # Files a reader can hold in their head; a module that really needs more says so in its docstring.
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p in ROOT.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 600 and "one job" not in (ast.get_docstring(
               ast.parse(p.read_text())) or "")]
    assert big == []
