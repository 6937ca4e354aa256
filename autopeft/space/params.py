"""Parameters of a space entry: a fixed value, categorical choices or a numeric range
(ParamDef), parsed and checked; a searched one becomes a Decision when the space is bound.

A parameter is written in one of these forms (see autopeft.space for the full reference):

    rank: 8                                # fixed: no decision
    rank: [4, 8, 16]                       # categorical choices
    rank: {choices: [4, 8, 16]}            # the same, spelled out
    rank: {value: 8}                       # fixed, spelled out
    dropout: {low: 0.0, high: 0.2}         # float range
    rank: {low: 2, high: 64, log: true}    # int range (int because the parameter is int)
    targets: [q, v]                        # a fixed target set
    targets: [[q, v], [q, k, v, o]]        # a choice between target sets

Values are checked against autopeft.moduletypes (kind, bounds, allowed values).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from autopeft.moduletypes import LORA_DATA_FREE_INITS, TARGETS, ParamSpec
from autopeft.space.decision import DEFAULT_LEVELS, Decision, same_key
from autopeft.space.errors import Where, did_you_mean, join, show, type_name

RANGE_KEYS = ("low", "high", "log", "step", "levels")
# inits that use init_scale (see autopeft.moduletypes.INITS); the others ignore it
SCALED_INITS = ("zero", "xavier", "kaiming", "gaussian")
# parameters bounded by the model's hidden size when bind() is given one
HIDDEN_BOUNDED = ("rank", "size")


@dataclass(frozen=True)
class ParamDef:
    """A parameter as written in the space: fixed, choices or range (JSON-safe values)."""

    name: str
    kind: str                 # the ParamSpec kind: int, float, choice, targets, bool
    path: str
    mode: str                 # "fixed" | "choices" | "range"
    value: Any = None
    choices: tuple = ()
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    levels: int = DEFAULT_LEVELS
    given: bool = True        # written in the file (False: the type's default)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def searched(self) -> bool:
        return self.mode != "fixed"

    def values(self) -> tuple:
        """Every value this parameter can take (a range: its two ends)."""
        if self.mode == "fixed":
            return (self.value,)
        if self.mode == "choices":
            return self.choices
        return (self.low, self.high)

    def canonical(self) -> dict[str, Any]:
        if self.mode == "fixed":
            return {"value": self.value}
        if self.mode == "choices":
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step,
                "levels": self.levels, "type": "int" if self.kind == "int" else "float"}

    def decision(self, name: str, parent: str | None, parent_values: tuple) -> Decision:
        if self.mode == "choices":
            kind = "bool" if self.kind == "bool" else "categorical"
            return Decision(name, kind, choices=self.choices, parent=parent,
                            parent_values=parent_values, path=self.path)
        if self.mode == "range":
            return Decision(name, "int" if self.kind == "int" else "float", low=self.low,
                            high=self.high, log=self.log, step=self.step, levels=self.levels,
                            parent=parent, parent_values=parent_values, path=self.path)
        raise ValueError(f"{self.path} is fixed: it has no decision")


def default_param(spec: ParamSpec, path: str) -> ParamDef:
    value = list(spec.default) if spec.kind == "targets" else spec.default
    if spec.kind == "float":
        value = float(value)
    return ParamDef(spec.name, spec.kind, path, "fixed", value=value, given=False)


def parse_param(spec: ParamSpec, raw: Any, path: str, where: Where, *,
                zero_means_off: bool = False, what: str = "") -> ParamDef:
    """Parse one parameter written at `path` against its ParamSpec."""
    what = what or spec.name

    def check(v: Any, at: str) -> Any:
        return check_value(spec, v, at, where, zero_means_off=zero_means_off, what=what)

    if raw is None:
        raise where.error(path, f"{what} has no value", None,
                          fix=f"give a value, a list of choices or a range; default: "
                              f"{show(default_param(spec, path).value)}")
    if isinstance(raw, dict):
        keys = set(raw)
        if "choices" in keys or "value" in keys:
            key = "choices" if "choices" in keys else "value"
            if len(keys) > 1:
                other = sorted(keys - {key})
                raise where.error(join(path, other[0]), f"{other[0]!r} cannot be combined "
                                  f"with {key!r}", raw[other[0]],
                                  fix=f"write either {{{key}: ...}} alone or a range "
                                      f"{{low, high, ...}}")
            if key == "value":
                return ParamDef(spec.name, spec.kind, path, "fixed",
                                value=check(raw["value"], join(path, "value")))
            choices = raw["choices"]
            if not isinstance(choices, list):
                raise where.error(join(path, "choices"), f"choices must be a list, got "
                                  f"{show(choices)} ({type_name(choices)})", choices,
                                  fix="write choices: [a, b, ...]")
            if spec.kind == "targets" and choices and not all(isinstance(c, list)
                                                              for c in choices):
                raise where.error(join(path, "choices"), "each choice of targets must be a "
                                  f"list of targets, got {show(choices)}", choices,
                                  fix="write choices: [[q, v], [q, k, v, o]]")
            return _choices(spec, choices, join(path, "choices"), where, check, what)
        unknown = sorted(k for k in keys if k not in RANGE_KEYS)
        if unknown:
            raise where.error(join(path, str(unknown[0])), f"unknown key {unknown[0]!r} in "
                              f"{what}", unknown[0],
                              fix=did_you_mean(unknown[0], ("value", "choices") + RANGE_KEYS))
        return _range(spec, raw, path, where, zero_means_off, what)
    if isinstance(raw, list):
        if spec.kind == "targets":
            if raw and all(isinstance(c, list) for c in raw):
                return _choices(spec, raw, path, where, check, what)
            if any(isinstance(c, list) for c in raw):
                raise where.error(path, f"targets mixes names and lists: {show(raw)}", raw,
                                  fix="a flat list is one fixed set ([q, v]); a list of lists "
                                      "is a choice between sets ([[q, v], [q, k, v, o]])")
            return ParamDef(spec.name, spec.kind, path, "fixed", value=check(raw, path))
        return _choices(spec, raw, path, where, check, what)
    return ParamDef(spec.name, spec.kind, path, "fixed", value=check(raw, path))


def _choices(spec: ParamSpec, raw: list, path: str, where: Where, check: Any,
             what: str) -> ParamDef:
    if not raw:
        raise where.error(path, f"{what} has an empty list of choices: []", raw,
                          fix="list at least one value (one value = fixed)")
    values, seen = [], {}
    for i, item in enumerate(raw):
        v = check(item, join(path, i))
        key = same_key(v)
        if key in seen:
            raise where.error(join(path, i), f"{what} lists {show(item)} twice (as items "
                              f"{seen[key]} and {i})", item, fix="remove the duplicate")
        seen[key] = i
        values.append(v)
    if len(values) == 1:  # one choice is no choice: same meaning, same fingerprint
        return ParamDef(spec.name, spec.kind, path, "fixed", value=values[0])
    return ParamDef(spec.name, spec.kind, path, "choices", choices=tuple(values))


def _range(spec: ParamSpec, raw: dict, path: str, where: Where, zero_means_off: bool,
           what: str) -> ParamDef:
    if spec.kind not in ("int", "float"):
        raise where.error(path, f"{what} is a {spec.kind} parameter and cannot take a range",
                          raw, fix=f"write a value or a list of choices; allowed: "
                                   f"{_allowed_text(spec)}")
    for key in ("low", "high"):
        if key not in raw:
            raise where.error(path, f"the range of {what} has no {key!r}", raw,
                              fix="write {low: A, high: B} (optional: log, step, levels)")
        v = raw[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise where.error(join(path, key), f"{key} of {what} must be a number, got "
                              f"{show(v)} ({type_name(v)})", v, fix=_number_fix(v))
        if spec.kind == "int" and not isinstance(v, int):
            raise where.error(join(path, key), f"{what} is an integer parameter but {key} is "
                              f"{show(v)}", v, fix="write whole numbers for low and high")
    low, high = raw["low"], raw["high"]
    if spec.kind == "float":
        low, high = float(low), float(high)
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise where.error(join(path, "log"), f"log must be true or false, got {show(log)}",
                          log, fix="write log: true or leave it out")
    if low >= high:
        raise where.error(path, f"the range of {what} has low {show(raw['low'])} not below "
                          f"high {show(raw['high'])}", {"low": raw["low"], "high": raw["high"]},
                          fix="swap them, or write a single value to fix the parameter")
    if log and low <= 0:
        raise where.error(join(path, "low"), f"a log range needs low > 0, got {show(low)}",
                          raw["low"], fix="raise low above 0 or drop log: true")
    for key, v in (("low", low), ("high", high)):
        check_value(spec, v, join(path, key), where, zero_means_off=zero_means_off, what=what)
    step = raw.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise where.error(join(path, "step"), f"step must be a positive number, got "
                              f"{show(step)}", step, fix="write step: 0.1 or leave it out")
        if spec.kind == "int" and not isinstance(step, int):
            raise where.error(join(path, "step"), f"{what} is an integer parameter but step "
                              f"is {show(step)}", step, fix="write a whole-number step")
        if log:
            raise where.error(join(path, "step"), f"step {show(step)} cannot be combined "
                              "with log: true",
                              step, fix="drop step (a log range is sampled continuously)")
        if step > high - low:
            raise where.error(join(path, "step"), f"step {show(step)} is larger than the "
                              f"range {show(low)}..{show(high)}", step,
                              fix="use a smaller step or a single value")
        step = float(step) if spec.kind == "float" else int(step)
    levels = raw.get("levels", DEFAULT_LEVELS)
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise where.error(join(path, "levels"), f"levels must be an integer >= 2, got "
                          f"{show(levels)}", levels,
                          fix=f"write levels: {DEFAULT_LEVELS} (grid points for discrete "
                              "controllers) or leave it out")
    return ParamDef(spec.name, spec.kind, path, "range", low=low, high=high, log=log,
                    step=step, levels=levels)


def _number_fix(v: Any) -> str:
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            pass
        else:
            return (f"YAML reads {v} as a string (YAML 1.1 floats need a dot): "
                    f"write it like 1.0e-4")
    return "write a number"


def _allowed_text(spec: ParamSpec) -> str:
    if spec.kind == "choice":
        return ", ".join(map(str, spec.allowed))
    if spec.kind == "targets":
        return "a list of " + ", ".join(TARGETS)
    if spec.kind == "bool":
        return "true, false"
    return f"{spec.kind} in [{spec.low}, {spec.high}]"


def check_value(spec: ParamSpec, v: Any, path: str, where: Where, *,
                zero_means_off: bool = False, what: str = "") -> Any:
    """Check one value against its ParamSpec; return it in canonical form."""
    what = what or spec.name
    if spec.kind in ("int", "float"):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                spec.kind == "int" and not isinstance(v, int)):
            want = "an integer" if spec.kind == "int" else "a number"
            raise where.error(path, f"{what} must be {want}, got {show(v)} ({type_name(v)})",
                              v, fix=_number_fix(v) if spec.kind == "float" else
                              f"write a whole number in [{_num(spec.low)}, {_num(spec.high)}]")
        if isinstance(v, float) and not math.isfinite(v):
            raise where.error(path, f"{what} must be finite, got {show(v)}", v,
                              fix="write a finite number")
        if zero_means_off and v == 0:
            return 0
        if (spec.low is not None and v < spec.low) or (spec.high is not None and v > spec.high):
            off = " (or 0 to switch the module off)" if zero_means_off else ""
            raise where.error(path, f"{what} must be in [{_num(spec.low)}, {_num(spec.high)}]"
                              f"{off}, got {show(v)}", v,
                              fix=f"use a value between {_num(spec.low)} and "
                                  f"{_num(spec.high)}{off}")
        return float(v) if spec.kind == "float" else int(v)
    if spec.kind == "choice":
        if not isinstance(v, str) or v not in spec.allowed:
            why = " (peft's data-free inits apply to lora only)" \
                if v in LORA_DATA_FREE_INITS else ""
            raise where.error(path, f"{what} {show(v)} is not allowed here{why}", v,
                              fix=did_you_mean(v, map(str, spec.allowed)))
        return v
    if spec.kind == "bool":
        if not isinstance(v, bool):
            raise where.error(path, f"{what} must be true or false, got {show(v)}", v,
                              fix="write true or false")
        return v
    if spec.kind == "targets":
        if not isinstance(v, list):
            raise where.error(path, f"{what} must be a list of targets, got {show(v)} "
                              f"({type_name(v)})", v,
                              fix=f"write e.g. [q, v]; targets: {', '.join(TARGETS)}")
        if not v:
            raise where.error(path, f"{what} is an empty set of targets", v,
                              fix=f"name at least one of {', '.join(TARGETS)}")
        for i, t in enumerate(v):
            if not isinstance(t, str) or t not in TARGETS:
                raise where.error(join(path, i), f"unknown target {show(t)}", t,
                                  fix=did_you_mean(t, TARGETS))
            if t in v[:i]:
                raise where.error(join(path, i), f"target {show(t)} is listed twice", t,
                                  fix="remove the duplicate")
        return [t for t in TARGETS if t in v]
    raise ValueError(f"unknown parameter kind {spec.kind!r}")  # a moduletypes bug


def _num(x: Any) -> str:
    return "-inf" if x is None else f"{x:g}" if isinstance(x, float) else str(x)
