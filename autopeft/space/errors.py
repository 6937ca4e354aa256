"""Located errors for the DSL: every message names the file, the line, the YAML path,
the offending value and a fix.

The YAML reader records the line of every key and list item (`lines`: YAML path -> line),
so errors raised long after parsing (at bind time, say) still point at the right line.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

from autopeft.exceptions import SpaceError
from autopeft.yamlio import Lines, join, located, show

__all__ = ["Where", "did_you_mean", "join", "show", "type_name"]

_MISSING = object()


def type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "nothing (null)"}
    return names.get(type(value), type(value).__name__)


def did_you_mean(word: Any, options: Iterable[str], listing: bool = True) -> str:
    options = list(options)
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}allowed: {', '.join(options)}" if listing else hint


class Where:
    """Where a space comes from: its file name and the line of each YAML path."""

    def __init__(self, source: str, lines: Mapping[str, int] | None = None) -> None:
        self.source = source
        self.lines = Lines(lines or {})

    def line(self, path: str) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        return self.lines.at(path) if path else None

    def error(self, path: str, message: str, value: Any = _MISSING,
              fix: str | None = None) -> SpaceError:
        if value is not _MISSING and value is not None and show(value) not in message:
            message = f"{message} (got {show(value)})"  # every message names the bad value
        err = located(SpaceError, self.source, message, line=self.line(path),
                      path=path or None, value=None if value is _MISSING else value, fix=fix)
        return err  # type: ignore[return-value]
