"""Reading space files: autopeft.yamlio's strict reader, then the DSL.

The reader (shared with experiment, preset and candidate files) refuses duplicate keys,
too deep or too big documents and alias bombs, and records the line of every YAML path,
so that errors raised long after parsing still point at the right line.
"""
from __future__ import annotations

import os
from typing import Any

from autopeft import yamlio
from autopeft.exceptions import SpaceError
from autopeft.space.errors import Where


def read_yaml(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML text; return (plain data, {yaml path: line}). Raises SpaceError."""
    return yamlio.read_yaml(text, source, SpaceError)


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
    return parse_space(yamlio.read_file(path, SpaceError), str(path))
