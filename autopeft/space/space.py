"""SearchSpace: what a space file says, parsed and validated, model-independent
(`bind` gives the BoundSpace of a model). See autopeft.space for the DSL reference."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from autopeft.candidate import MODULE_HYPER
from autopeft.moduletypes import HYPERPARAMETERS, MODULE_TYPES, ModuleType
from autopeft.space.bound import BoundSpace
from autopeft.space.errors import Where, did_you_mean, join, show, type_name
from autopeft.space.layers import ALL, LayerSpec, parse_layers
from autopeft.space.params import (HIDDEN_BOUNDED, SCALED_INITS, ParamDef, default_param,
                                   parse_param)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
TOP_KEYS = ("space", "version", "description", "select", "shared_layers", "modules",
            "hyperparameters")
SELECT_MODES = ("one", "any")
ENTRY_KEYS = ("type", "required", "layers", "hyperparameters")
RESERVED_NAMES = ("module", "shared", "hp")
__all__ = ["HIDDEN_BOUNDED", "SCALED_INITS", "Entry", "SearchSpace"]  # the first two: old home
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SPACE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Entry:
    """One entry of `modules:`: a module type with its parameters and layers."""

    name: str
    type: str
    required: bool
    params: tuple[ParamDef, ...]      # every parameter of the type, in the type's order
    layers: LayerSpec | None          # None for types without layers (prompt)
    path: str
    # the entry's own training hyperparameters (`hyperparameters:` in the entry), which
    # replace the top-level ones when the entry is chosen / on (see BoundSpace)
    hyper: tuple[ParamDef, ...] = ()

    @property
    def module_type(self) -> ModuleType:
        return MODULE_TYPES[self.type]

    def canonical(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type, "required": self.required,
               "layers": None if self.layers is None else self.layers.canonical(),
               "params": {p.name: p.canonical() for p in self.params}}
        if self.hyper:  # only when given, so spaces without them keep their fingerprint
            out["hyperparameters"] = [{"name": p.name, **p.canonical()} for p in self.hyper]
        return out


class SearchSpace:
    """A parsed, validated space file. Model-independent: `bind` resolves the layers."""

    def __init__(self, *, name: str, select: str, entries: tuple[Entry, ...],
                 hyperparameters: tuple[ParamDef, ...], shared_layers: LayerSpec | None,
                 description: str = "", version: int = FORMAT_VERSION,
                 where: Where | None = None) -> None:
        self.name = name
        self.select = select
        self.entries = entries
        self.hyperparameters = hyperparameters
        self.shared_layers = shared_layers
        self.description = description
        self.version = version
        self.where = where or Where("<space>")

    @property
    def source(self) -> str:
        return self.where.source

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, source={self.source!r})"

    # ----------------------------------------------------------------- parsing
    @classmethod
    def from_data(cls, data: Any, where: Where) -> "SearchSpace":
        if data is None:
            raise where.error("", "the space file is empty", None,
                              fix="write at least `space: NAME` and `modules:`")
        if not isinstance(data, dict):
            raise where.error("(root)", f"a space must be a mapping, got {show(data)} "
                              f"({type_name(data)})", data,
                              fix="start with `space: NAME` and `modules:` at the top level")
        for key in data:
            if key not in TOP_KEYS:
                raise where.error(key, f"unknown top-level key {key!r}", key,
                                  fix=did_you_mean(key, TOP_KEYS))
        name = data.get("space")
        if not isinstance(name, str) or not _SPACE_NAME.match(name):
            raise where.error("space", f"the space needs a name, got {show(name)}", name,
                              fix="write `space: my_space` (letters, digits, _ . -)")
        version = data.get("version", FORMAT_VERSION)
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise where.error("version", f"version {show(version)} is not supported", version,
                              fix=f"this autopeft reads version {FORMAT_VERSION}: write "
                                  f"`version: {FORMAT_VERSION}` or leave it out")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise where.error("description", f"description must be text, got {show(description)}",
                              description, fix="quote it")
        select = data.get("select", "one")
        if select not in SELECT_MODES:
            raise where.error("select", f"select {show(select)} is not a mode", select,
                              fix="select: one (pick one module) or select: any (each module "
                                  "on/off, to mix modules)")
        shared = None
        if "shared_layers" in data:
            shared = parse_layers(data["shared_layers"], "shared_layers", where,
                                  allow_shared=False)
        modules = data.get("modules")
        if not isinstance(modules, dict) or not modules:
            raise where.error("modules", f"modules must be a non-empty mapping of entries, got "
                              f"{show(modules)}", modules,
                              fix="write e.g. modules: {lora: {rank: [4, 8]}}")
        entries = tuple(_parse_entry(n, raw, select, where) for n, raw in modules.items())
        users = [e for e in entries if e.layers is not None and e.layers.shared]
        if users and shared is None:
            raise where.error(join(users[0].path, "layers"), "`layers: shared` but the space "
                              "has no shared_layers", "shared",
                              fix="add e.g. `shared_layers: mask` at the top level, or give "
                                  "this entry its own layers")
        if shared is not None and not users:
            raise where.error("shared_layers", "shared_layers is set but no entry uses "
                              "`layers: shared`", data["shared_layers"],
                              fix="write `layers: shared` in the entries that share it, or "
                                  "remove shared_layers")
        hps = data.get("hyperparameters") or {}
        if not isinstance(hps, dict):
            raise where.error("hyperparameters", f"hyperparameters must be a mapping, got "
                              f"{show(hps)}", hps, fix="write e.g. hyperparameters: "
                                                      "{learning_rate: {low: 1.0e-4, high: "
                                                      "1.0e-2, log: true}}")
        hyper = _parse_hyper(hps, "hyperparameters", where, HYPERPARAMETERS)
        _check_overridden(hyper, entries, select, where)
        _check_groups(entries, select, where)
        space = cls(name=name, select=select, entries=entries, hyperparameters=tuple(hyper),
                    shared_layers=shared, description=description, version=version,
                    where=where)
        log.debug("loaded space %s from %s (%d entries)", name, where.source, len(entries))
        return space

    # ----------------------------------------------------------------- identity
    def canonical(self) -> dict[str, Any]:
        """The normalised form: defaults filled, one-item choice lists as fixed values,
        target sets in TARGETS order, floats as floats. Key order, comments, layout and
        `description` do not appear; entry and hyperparameter order do (they fix the
        decision order)."""
        return {
            "space": self.name,
            "version": self.version,
            "select": self.select,
            "shared_layers": None if self.shared_layers is None
            else self.shared_layers.canonical(),
            "modules": [e.canonical() for e in self.entries],
            "hyperparameters": [{"name": p.name, **p.canonical()} for p in self.hyperparameters],
        }

    @cached_property
    def fingerprint(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def bind(self, num_layers: int, hidden_size: int | None = None) -> BoundSpace:
        """The space on a model with `num_layers` layers (and `hidden_size`, to check ranks
        and sizes). SpaceError if the space cannot fit that model."""
        return BoundSpace(self, num_layers, hidden_size)


def _parse_entry(name: Any, raw: Any, select: str, where: Where) -> Entry:
    path = join("modules", str(name))
    if not isinstance(name, str) or not _NAME.match(name) or name in RESERVED_NAMES:
        raise where.error(path, f"entry name {show(name)} cannot be used", name,
                          fix="use letters, digits and _ (not starting with a digit), and not "
                              f"{', '.join(RESERVED_NAMES)}")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise where.error(path, f"entry {name!r} must be a mapping of parameters, got "
                          f"{show(raw)} ({type_name(raw)})", raw,
                          fix=f"write e.g. {name}: {{type: lora, rank: [4, 8]}}")
    typ = raw.get("type", name)
    if not isinstance(typ, str) or typ not in MODULE_TYPES:
        at = join(path, "type") if "type" in raw else path
        fix = did_you_mean(typ, MODULE_TYPES)
        if "type" not in raw:
            fix = f"add `type:` (the entry name is used when it is missing); {fix}"
        raise where.error(at, f"unknown module type {show(typ)}", typ, fix=fix)
    mtype = MODULE_TYPES[typ]
    # a type without layers (prompt, full) has no `layers:`, but may have its own
    # hyperparameters like any other (full fine-tuning needs a far smaller learning rate)
    allowed = ENTRY_KEYS + mtype.param_names if mtype.layered else \
        tuple(k for k in ENTRY_KEYS if k != "layers") + mtype.param_names
    for key in raw:
        if key not in allowed:
            if key == "layers":
                raise where.error(join(path, key), f"{typ} modules have no insertion layers",
                                  raw[key], fix="remove `layers:` from this entry")
            if key in HYPERPARAMETERS:
                raise where.error(join(path, str(key)), f"{key} is a training hyperparameter, "
                                  f"not a parameter of {typ}", key,
                                  fix=f"write it under the entry's hyperparameters: "
                                      f"{{{key}: ...}}")
            raise where.error(join(path, str(key)), f"{typ} has no parameter {key!r}", key,
                              fix=did_you_mean(key, allowed))
    required = raw.get("required", False)
    if not isinstance(required, bool):
        raise where.error(join(path, "required"), f"required must be true or false, got "
                          f"{show(required)}", required, fix="write required: true")
    if required and select == "one":
        raise where.error(join(path, "required"), "required: true needs select: any (with "
                          "select: one exactly one entry is used per candidate)", required,
                          fix="set `select: any` at the top level, or drop `required`")
    params = []
    for spec in mtype.params:
        at = join(path, spec.name)
        if spec.name in raw:
            params.append(parse_param(spec, raw[spec.name], at, where,
                                      zero_means_off=spec.name == mtype.size_param))
        else:
            params.append(default_param(spec, at))
    _check_init_scale(params, typ, where)
    layers = None
    if mtype.layered:
        layers = parse_layers(raw["layers"], join(path, "layers"), where, allow_shared=True) \
            if "layers" in raw else LayerSpec(ALL.forms, path=join(path, "layers"))
    own = _entry_hyper(raw.get("hyperparameters"), join(path, "hyperparameters"), select,
                       where)
    return Entry(name, typ, required, tuple(params), layers, path, own)


def _parse_hyper(raw: Any, path: str, where: Where, allowed: dict) -> tuple[ParamDef, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise where.error(path, f"hyperparameters must be a mapping, got {show(raw)}", raw,
                          fix="write e.g. hyperparameters: {learning_rate: {low: 1.0e-4, "
                              "high: 1.0e-2, log: true}}")
    out = []
    for hp, value in raw.items():
        at = join(path, str(hp))
        if hp not in allowed:
            if hp in HYPERPARAMETERS:  # known, but not per module in a mixture
                raise where.error(at, f"{hp} cannot differ between the modules of one "
                                  "candidate (select: any mixes them into one training "
                                  "run; only " + ", ".join(allowed) + " have one optimizer "
                                  "parameter group per module)", hp,
                                  fix="move it to the top-level hyperparameters")
            raise where.error(at, f"unknown hyperparameter {hp!r}", hp,
                              fix=did_you_mean(hp, allowed))
        out.append(parse_param(allowed[hp], value, at, where))
    return tuple(out)


def _entry_hyper(raw: Any, path: str, select: str, where: Where) -> tuple[ParamDef, ...]:
    """An entry's own hyperparameters. With select: one the chosen entry's values are the
    candidate's; with select: any each module gets its own optimizer parameter group, so
    only what a parameter group can have of its own (MODULE_HYPER) is allowed."""
    allowed = HYPERPARAMETERS if select == "one" else \
        {k: HYPERPARAMETERS[k] for k in MODULE_HYPER}
    return _parse_hyper(raw, path, where, allowed)


def _check_overridden(hyper: tuple[ParamDef, ...], entries: tuple[Entry, ...], select: str,
                      where: Where) -> None:
    """select: one: a top-level hyperparameter that every entry replaces is never used
    (with select: any it still trains the classifier head and the modules without one)."""
    if select != "one":
        return
    for p in hyper:
        if all(p.name in {h.name for h in e.hyper} for e in entries):
            raise where.error(p.path, f"hyperparameters.{p.name} is never used: every entry "
                              f"({', '.join(e.name for e in entries)}) sets its own",
                              p.canonical(),
                              fix=f"remove hyperparameters.{p.name}, or let an entry use it "
                                  f"by dropping {p.name} from that entry's hyperparameters")


def _check_groups(entries: tuple[Entry, ...], select: str, where: Where) -> None:
    """select: any: a module's own parameter group is found by its type (see
    autopeft.methods.groups), so two entries of one type cannot each have their own."""
    if select != "any":
        return
    for e in entries:
        twin = next((o for o in entries if o is not e and o.type == e.type), None)
        if e.hyper and twin is not None:
            raise where.error(join(e.path, "hyperparameters"), f"entries {e.name!r} and "
                              f"{twin.name!r} are both {e.type}: their weights cannot be told "
                              "apart in the optimizer, so neither can have hyperparameters "
                              "of its own", e.name,
                              fix="use the top-level hyperparameters for them")


def _check_init_scale(params: list[ParamDef], typ: str, where: Where) -> None:
    by_name = {p.name: p for p in params}
    scale, init = by_name.get("init_scale"), by_name.get("init")
    if scale is None or init is None or not scale.given:
        return
    if not any(v in SCALED_INITS for v in init.values()):
        raise where.error(scale.path, f"init_scale is set but init can only be "
                          f"{', '.join(map(str, init.values()))}, which ignore it",
                          scale.canonical(),
                          fix=f"let init include one of {', '.join(SCALED_INITS)}, or remove "
                              "init_scale")
