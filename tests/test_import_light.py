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
# (siblings in L4 never import each other). Modules not listed here are not checked.
LAYERS = {
    "exceptions": 0, "version": 0, "_imports": 0, "moduletypes": 0, "candidate": 0,
    "resources": 0, "yamlio": 0,
    "space": 1,
    "records": 2, "config": 2,
    "models": 3, "methods": 3, "cost": 3, "reward": 3, "metrics": 3, "taskdata": 3,
    "controllers": 4, "storage": 4, "evaluation": 4, "pruners": 4,
    "executors": 5,
    "study": 6, "export": 6, "finalize": 6, "report": 6,
    "cli": 7, "testing": 7,
}
SIBLINGS = {"controllers", "storage", "evaluation"}


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "autopeft" and len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    """Every autopeft module named in an import, at any depth (lazy imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
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
