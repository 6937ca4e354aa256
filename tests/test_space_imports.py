"""The DSL package's modules import each other in one direction only (issue 14 item 4:
space/bound.py and space/space.py used to import each other, one of them inside a
function). Imports inside functions count; `if TYPE_CHECKING:` blocks do not."""
from __future__ import annotations

import ast
from pathlib import Path

SPACE = Path(__file__).resolve().parents[1] / "autopeft" / "space"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m.split(".")[2] for m in out if m.startswith("autopeft.space.")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return trail + [node, nxt]
            if nxt not in state:
                found = visit(nxt, trail + [node])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_space_modules_have_no_import_loop() -> None:
    graph = {p.stem: _imports(p) - {p.stem} for p in SPACE.glob("*.py")
             if p.stem != "__init__"}
    assert graph["space"] >= {"bound"}, "SearchSpace.bind builds the BoundSpace"
    assert _cycle(graph) is None, f"import loop: {' -> '.join(_cycle(graph))}"


def test_the_loop_check_finds_a_loop() -> None:
    assert _cycle({"space": {"bound"}, "bound": {"space"}}) == ["bound", "space", "bound"]
    assert _cycle({"space": {"bound", "params"}, "bound": {"params"}, "params": set()}) is None


def test_old_import_paths_still_work() -> None:
    from autopeft.space.params import HIDDEN_BOUNDED, SCALED_INITS
    from autopeft.space.space import HIDDEN_BOUNDED as H2
    from autopeft.space.space import SCALED_INITS as S2

    assert (H2, S2) == (HIDDEN_BOUNDED, SCALED_INITS)
