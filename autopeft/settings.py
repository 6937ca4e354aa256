"""`Setting`: one typed, bounded option of a controller or a pruner.

It lives below both (ARCHITECTURE.md §2, layer 0): controllers and pruners declare their
options with it, and neither imports the other to do so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autopeft.exceptions import ConfigError

_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false",
               "str": "a string", "str_list": "a list of strings",
               "float_list": "a list of numbers"}


@dataclass(frozen=True)
class Setting:
    """One setting a controller accepts (in presets and as keyword arguments).

    kind: "int", "float", "bool", "str", "str_list" or "float_list"; `nullable` lets it be
    None; `low`/`high` bound numbers; `choices` restricts strings.
    """

    default: Any
    kind: str
    doc: str
    nullable: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, name: str, value: Any) -> Any:
        """The value, normalised; raises ConfigError(path=name) if it does not fit."""
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"setting {name!r} may not be null", path=name,
                              fix=f"give {_KIND_WORDS[self.kind]}, e.g. {self.default!r}")
        ok = {
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "bool": lambda v: isinstance(v, bool),
            "str": lambda v: isinstance(v, str),
            "str_list": lambda v: isinstance(v, (list, tuple))
            and all(isinstance(x, str) for x in v),
            "float_list": lambda v: isinstance(v, (list, tuple)) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v),
        }[self.kind](value)
        if not ok:
            raise ConfigError(f"setting {name!r} must be {_KIND_WORDS[self.kind]}, got "
                              f"{value!r}",
                              path=name, value=value, fix=f"e.g. {name}: {self.default!r}")
        if self.kind == "float":
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"setting {name!r} must be finite, got {value!r}",
                                  path=name, value=value)
        if self.kind in ("str_list", "float_list"):
            value = [float(x) if self.kind == "float_list" else x for x in value]
        for bound, bad in ((self.low, lambda v, b: v < b), (self.high, lambda v, b: v > b)):
            if bound is not None and self.kind in ("int", "float") and bad(value, bound):
                raise ConfigError(
                    f"setting {name!r}={value!r} is out of range [{self.low}, {self.high}]",
                    path=name, value=value)
        if self.choices and value not in self.choices:
            raise ConfigError(f"setting {name!r}={value!r} is not one of {list(self.choices)}",
                              path=name, value=value)
        return value
