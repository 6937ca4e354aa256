"""A Decision: one choice a controller makes in a bound space (categorical, bool, int or
float), with its condition (parent, parent_values), its discrete options and sampling.

Equality of values is JSON equality (`same_key`): True is not 1, and dict/list values
(layer options, target sets) compare by content.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from autopeft.space.errors import show

DEFAULT_LEVELS = 8


def plain(value: Any) -> Any:
    """numpy scalars and tuples -> plain JSON-safe Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def same_key(value: Any) -> str:
    """Equality key: JSON text, so 1 != True and dicts/lists compare by content."""
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"))


def _round(x: float) -> float:
    return float(f"{x:.10g}")


@dataclass(frozen=True)
class Decision:
    """One decision of a bound space.

    kind: "categorical" (choices), "bool" (choices (False, True)), "int" or "float" (a
    range low..high, optionally log-scaled or stepped). `levels` is how many grid points
    `options()` offers for a range: that grid is what a discrete controller (LSTM) and
    `encode` use, and what `cardinality` counts. The decision is active iff `parent` is
    None, or the parent is active and its value is one of `parent_values`.
    `path` is the YAML path the decision comes from.
    """

    name: str
    kind: str
    choices: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    levels: int = DEFAULT_LEVELS
    parent: str | None = None
    parent_values: tuple = ()
    path: str = ""

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def is_range(self) -> bool:
        return self.kind in ("int", "float")

    def options(self) -> tuple:
        """The discrete options: the choices, or a grid of `levels` values for a range."""
        return self._options

    @cached_property
    def _options(self) -> tuple:
        if not self.is_range:
            return self.choices
        return tuple(_grid(self.kind, self.low, self.high, self.log, self.step, self.levels))

    @cached_property
    def _choice_keys(self) -> dict[str, int]:
        return {same_key(c): i for i, c in enumerate(self.choices)}

    @cached_property
    def _parent_keys(self) -> frozenset[str]:
        return frozenset(same_key(v) for v in self.parent_values)

    def parent_accepts(self, value: Any) -> bool:
        return same_key(value) in self._parent_keys

    def _choice_index(self, value: Any) -> int | None:
        index = self._choice_keys.get(same_key(value))
        if index is None and isinstance(value, int) and not isinstance(value, bool):
            index = self._choice_keys.get(same_key(float(value)))  # 16 for a 16.0 choice
        return index

    def contains(self, value: Any) -> bool:
        """Is `value` a legal value of this decision?"""
        value = plain(value)
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "categorical":
            return self._choice_index(value) is not None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        tol = 1e-9 * max(1.0, abs(self.high))
        if value < self.low - tol or value > self.high + tol:
            return False
        if self.step:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-6
        return True

    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn uniformly (log-uniformly for log ranges) with `rng`."""
        if not self.is_range:
            return copy.deepcopy(self.choices[int(rng.integers(len(self.choices)))])
        low, high = self.low, self.high
        if self.kind == "int":
            step = int(self.step or 1)
            if self.log:
                # log-uniform over [low, high + 1), floored: P(k) ~ log((k + 1) / k)
                x = int(math.floor(math.exp(rng.uniform(math.log(low), math.log(high + 1)))))
                return min(max(x, low), high)  # (step and log never combine)
            return int(low + step * int(rng.integers(0, (high - low) // step + 1)))
        if self.log:
            x = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            x = float(rng.uniform(low, high))
        if self.step:
            x = _round(low + round((x - low) / self.step) * self.step)
        return float(min(max(x, low), high))

    def canonical_value(self, value: Any) -> Any:
        """A legal value in the decision's own spelling (the choice itself, a float for a
        float range): what assignments built by walk/sample hold."""
        value = plain(value)
        if self.kind == "categorical":
            return copy.deepcopy(self.choices[self._choice_index(value)])
        if self.kind == "float":
            return float(value)
        return value

    def index_of(self, value: Any) -> int:
        """Option index of `value`; for a range, the nearest grid point (in log space when
        `log`). Raises ValueError if value is not legal."""
        if not self.contains(value):
            raise ValueError(f"{show(value)} is not a legal value of decision {self.name!r}")
        if not self.is_range:
            return self._choice_index(plain(value))
        opts = np.asarray(self.options(), dtype=float)
        if self.log:
            dist = np.abs(np.log(opts) - math.log(value))
        else:
            dist = np.abs(opts - float(value))
        return int(np.argmin(dist))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.is_range:
            d.update(low=self.low, high=self.high, log=self.log, step=self.step,
                     levels=self.levels)
        else:
            d["choices"] = list(self.choices)
        d["parent"] = self.parent
        d["parent_values"] = list(self.parent_values)
        d["path"] = self.path
        return d


def _grid(kind: str, low: Any, high: Any, log: bool, step: Any, levels: int) -> list:
    if step:
        count = int(math.floor((high - low) / step + 1e-9)) + 1
        pick = range(count) if count <= levels else sorted(
            {int(round(i * (count - 1) / (levels - 1))) for i in range(levels)})
        vals = [low + k * step for k in pick]
        return [int(v) for v in vals] if kind == "int" else [_round(v) for v in vals]
    if kind == "int":
        if high - low + 1 <= levels:
            return list(range(int(low), int(high) + 1))
        raw = np.geomspace(low, high, levels) if log else np.linspace(low, high, levels)
        return sorted({int(round(float(v))) for v in raw})
    raw = np.geomspace(low, high, levels) if log else np.linspace(low, high, levels)
    return [_round(float(v)) for v in raw]
