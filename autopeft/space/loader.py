"""Strict YAML reading for space files.

yaml.safe_load silently keeps the last of two equal keys and forgets where things were;
this reader composes the node tree with PyYAML's SafeLoader and builds plain dicts and
lists itself, so that duplicate keys are errors and every YAML path keeps its line.
Only safe tags are understood (SafeLoader's constructors build the scalars).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from autopeft.exceptions import SpaceError
from autopeft.space.errors import Where, join, show

_MAX_DEPTH = 64


def read_yaml(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML text; return (plain data, {yaml path: line}). Raises SpaceError."""
    lines: dict[str, int] = {}
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else _build(loader, node, "", lines, source, 0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = exc.problem or exc.context or "cannot parse"
        err = SpaceError(f"invalid YAML: {problem}{at}",
                         file=f"{source}:{mark.line + 1}" if mark else source,
                         value=mark.line + 1 if mark else None,
                         fix="fix the YAML syntax there (indentation, a missing ':' or an "
                             "unclosed bracket or quote are the usual causes)")
        err.file = source
        err.line = mark.line + 1 if mark else None  # type: ignore[attr-defined]
        raise err from None
    except yaml.YAMLError as exc:
        raise SpaceError(f"invalid YAML: {exc}", file=source,
                         fix="fix the YAML syntax") from None
    finally:
        loader.dispose()
    return data, lines


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: str, lines: dict[str, int],
           source: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise Where(source, lines).error(path, "the document nests too deep (a recursive "
                                         "alias?)", fix="flatten the YAML")
    if isinstance(node, yaml.MappingNode):
        # keys written in this mapping itself (an aliased node is flattened only once)
        own = getattr(node, "_own_keys", None)
        if own is None:
            own = {id(k) for k, _ in node.value}
            node._own_keys = own  # type: ignore[attr-defined]
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merges (merged pairs first)
        out: dict[str, Any] = {}
        written_here: set[str] = set()
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise Where(source, {path: line}).error(
                    path, "a key must be a plain word, not a list or mapping",
                    fix="write key: value")
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise Where(source, {path: line}).error(
                    path, f"key {key_node.value!r} is read by YAML as {show(key)}, not as a "
                          "name", key_node.value, fix=f"quote it: '{key_node.value}'")
            child = join(path, key)
            if key in out and (key in written_here) and id(key_node) in own:
                raise Where(source, {child: line}).error(
                    child, f"duplicate key {key!r} (first at line {lines.get(child)}, again "
                           f"at line {line})", key,
                    fix="keep one of them: YAML would silently drop the first")
            if id(key_node) in own:
                written_here.add(key)
            # a key written here overrides one merged in by `<<` (YAML's merge rule)
            lines[child] = line
            out[key] = _build(loader, value_node, child, lines, source, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = join(path, i)
            lines[child] = item.start_mark.line + 1
            items.append(_build(loader, item, child, lines, source, depth + 1))
        return items
    return loader.construct_object(node, deep=True)


def parse_space(text: str, source: str = "<string>"):
    """Parse a space from YAML text (`source` names it in messages)."""
    from autopeft.space.space import SearchSpace

    data, lines = read_yaml(text, source)
    return SearchSpace.from_data(data, Where(source, lines))


def load_space(name_or_path: str | os.PathLike):
    """Load a space file: an existing path, or the name of a shipped space
    (`default.yaml` or `default`). Strict: raises SpaceError naming file, path and fix."""
    from autopeft.resources import resolve

    path = resolve(name_or_path, "search_spaces", error=SpaceError)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"cannot read the space file: {exc}", file=str(path),
                         fix="check the path and that the file is readable UTF-8 text") from None
    return parse_space(text, str(path))
