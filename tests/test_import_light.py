"""`import autopeft` stays light, and the package layering of ARCHITECTURE.md §2 holds."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "ray", "optuna", "peft", "transformers", "adapters", "datasets")
PKG = Path(__file__).resolve().parents[1] / "autopeft"


def _loaded_heavy(code: str) -> list[str]:
    probe = code + (f"\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} "
                    "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_autopeft_and_the_dsl_loads_no_heavy_library() -> None:
    code = ("import autopeft, autopeft.space, autopeft.resources, autopeft.candidate\n"
            "import numpy as np\n"
            "from autopeft.space import load_space\n"
            "b = load_space('default').bind(6)\n"
            "b.to_candidate(b.sample(np.random.default_rng(0)))")
    assert _loaded_heavy(code) == []


def test_space_check_command_loads_no_heavy_library() -> None:
    code = ("import contextlib, io\nfrom autopeft.cli.space_cmd import register, run\n"
            "import argparse\np = argparse.ArgumentParser(); register(p.add_subparsers())\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    run(p.parse_args(['space', 'check', 'autopeft_paper']))")
    assert _loaded_heavy(code) == []


# Layers of ARCHITECTURE.md §2: a module may import only modules of its layer or below
# (siblings in L4 never import each other). Every top-level module and package must be
# listed: a new one fails test_every_module_has_a_layer until it is given its layer.
LAYERS = {
    "exceptions": 0, "version": 0, "_imports": 0, "moduletypes": 0, "candidate": 0,
    "resources": 0, "yamlio": 0, "settings": 0, "pareto": 0,
    "names": 0,
    "__init__": 0,  # autopeft/__init__.py itself: `import autopeft` stays light
    "space": 1,
    "records": 2, "config": 2, "recipes": 2,
    "models": 3, "methods": 3, "cost": 3, "reward": 3, "metrics": 3, "taskdata": 3,
    "builtin_data": 3,
    "pruners": 3, "ranking": 3,
    "controllers": 4, "storage": 4, "evaluation": 4,
    "executors": 5,
    "study": 6, "export": 6, "finalize": 6, "report": 6, "plots": 6, "calibrate": 6,
    "cli": 7, "dashboard": 7, "testing": 7, "__main__": 7,
}
SIBLINGS = {"controllers", "storage", "evaluation"}
# Import cycles known and owned elsewhere. Each entry must still exist (the test fails
# when it is gone, so the entry is removed with the fix).
KNOWN_CYCLES: list[list[str]] = []


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "autopeft" and len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    """Every autopeft module named in an import, at any depth (lazy imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # `if TYPE_CHECKING:` blocks are never run: annotations only, not a runtime import
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if _top(m)}


def _violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        own = _top(".".join(rel.parts))
        if own not in LAYERS:
            continue
        for mod in sorted(_imports(path)):
            other = _top(mod)
            if other not in LAYERS or other == own:
                continue
            if LAYERS[other] > LAYERS[own] or (own in SIBLINGS and other in SIBLINGS):
                bad.append(f"{rel} (L{LAYERS[own]}) imports {mod} (L{LAYERS[other]})")
    return bad


def test_layering_is_honest() -> None:
    assert _violations() == []


def test_every_module_has_a_layer() -> None:
    tops = {_top(".".join(p.relative_to(PKG.parent).with_suffix("").parts))
            for p in PKG.rglob("*.py")}
    missing = sorted(t for t in tops if t is not None and t not in LAYERS)
    assert missing == [], f"give these modules a layer in LAYERS: {missing}"


def _module_graph() -> dict[str, set[str]]:
    """autopeft module -> the autopeft modules it imports (lazy imports included);
    `from pkg import sub` counts as importing the submodule when sub is one."""
    files = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in files.items():
        named = set()
        for name in _imports(path):
            while name not in files and "." in name:  # a name imported from a module
                name = name.rsplit(".", 1)[0]
            named.add(name)
        graph[module] = {m for m in named if m in files and m != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_cycles() -> None:
    assert import_cycles(_module_graph()) == sorted(KNOWN_CYCLES), (
        "import cycles changed: break a new one; drop a KNOWN_CYCLES entry that is fixed")


def test_the_cycle_finder_finds_a_lazy_loop() -> None:
    # the evaluation/base.py <-> evaluation/proxy.py loop of issue 14 was a lazy import
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_the_layer_walk_sees_imports() -> None:
    # guard against a walk that silently finds nothing
    assert "autopeft.space.decision" in _imports(PKG / "space" / "bound.py")
    assert "autopeft.candidate" in _imports(PKG / "space" / "bound.py")
    assert "autopeft.resources" in _imports(PKG / "space" / "loader.py")  # a lazy import


@pytest.mark.parametrize("module", ["autopeft.space", "autopeft.resources"])
def test_dsl_modules_import_only_light_autopeft_modules(module: str) -> None:
    folder = PKG / module.split(".")[1]
    files = sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
    allowed = {"exceptions", "moduletypes", "candidate", "resources", "space", "yamlio"}
    for path in files:
        assert {_top(m) for m in _imports(path)} <= allowed, path
