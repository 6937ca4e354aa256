"""SearchSpace (what a file says, model-independent) and BoundSpace (its decisions on a
model with a given number of layers). See autopeft.space for the DSL reference."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Mapping

import numpy as np

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.exceptions import SpaceError
from autopeft.moduletypes import HYPERPARAMETERS, MODULE_TYPES, ModuleType
from autopeft.space.errors import Where, did_you_mean, join, show, type_name
from autopeft.space.layers import ALL, BoundLayers, LayerSpec, bind_layers, parse_layers
from autopeft.space.params import (Decision, ParamDef, default_param, parse_param, plain,
                                   same_key)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
TOP_KEYS = ("space", "version", "description", "select", "shared_layers", "modules",
            "hyperparameters")
SELECT_MODES = ("one", "any")
ENTRY_KEYS = ("type", "required", "layers")
RESERVED_NAMES = ("module", "shared", "hp")
# inits that use init_scale (see autopeft.moduletypes.INITS); the others ignore it
SCALED_INITS = ("zero", "xavier", "kaiming", "gaussian")
# parameters bounded by the model's hidden size when bind() is given one
HIDDEN_BOUNDED = ("rank", "size")
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

    @property
    def module_type(self) -> ModuleType:
        return MODULE_TYPES[self.type]

    def canonical(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "required": self.required,
                "layers": None if self.layers is None else self.layers.canonical(),
                "params": {p.name: p.canonical() for p in self.params}}


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
        hyper = []
        for hp, raw in hps.items():
            path = join("hyperparameters", hp)
            if hp not in HYPERPARAMETERS:
                raise where.error(path, f"unknown hyperparameter {hp!r}", hp,
                                  fix=did_you_mean(hp, HYPERPARAMETERS))
            hyper.append(parse_param(HYPERPARAMETERS[hp], raw, path, where))
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

    def bind(self, num_layers: int, hidden_size: int | None = None) -> "BoundSpace":
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
    allowed = ENTRY_KEYS + mtype.param_names if mtype.layered else \
        ("type", "required") + mtype.param_names
    for key in raw:
        if key not in allowed:
            if key == "layers":
                raise where.error(join(path, key), f"{typ} modules have no insertion layers",
                                  raw[key], fix="remove `layers:` from this entry")
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
    return Entry(name, typ, required, tuple(params), layers, path)


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


# --------------------------------------------------------------------------- bound

class BoundSpace:
    """A space bound to a model: its decisions, sampling, encoding and candidates.

    Decision order (fixed; the flat encoding follows it): `module` (select: one with two
    or more entries); then per entry in file order: `<entry>.on` (select: any, unless
    required), its searched parameters in the module type's parameter order, its layer
    decisions (`<entry>.layers`, then `.layers.mask.<i>` / `.layers.group.<g>`); then the
    shared-layer decisions (`shared.layers...`); then `hp.<name>` in file order.
    """

    def __init__(self, space: SearchSpace, num_layers: int, hidden_size: int | None = None):
        where = space.where
        if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) \
                or num_layers < 1:
            raise where.error("", f"num_layers must be a positive integer, got "
                              f"{show(num_layers)}", num_layers,
                              fix="pass the model's number of layers (num_hidden_layers)")
        if hidden_size is not None and (isinstance(hidden_size, bool) or not isinstance(
                hidden_size, (int, np.integer)) or hidden_size < 1):
            raise where.error("", f"hidden_size must be a positive integer, got "
                              f"{show(hidden_size)}", hidden_size,
                              fix="pass the model's hidden size, or None")
        self.space = space
        self.num_layers = int(num_layers)
        self.hidden_size = None if hidden_size is None else int(hidden_size)
        if self.hidden_size is not None:
            self._check_hidden(self.hidden_size)
        decisions: list[Decision] = []
        multi = space.select == "one" and len(space.entries) > 1
        if multi:
            decisions.append(Decision("module", "categorical",
                                      choices=tuple(e.name for e in space.entries),
                                      path="modules"))
        self._gates: dict[str, tuple[str | None, tuple]] = {}
        self._layers: dict[str, BoundLayers] = {}
        for e in space.entries:
            if multi:
                gate: tuple[str | None, tuple] = ("module", (e.name,))
            elif space.select == "any" and not e.required:
                gate = (f"{e.name}.on", (True,))
                decisions.append(Decision(gate[0], "bool", choices=(False, True), path=e.path))
            else:
                gate = (None, ())
            self._gates[e.name] = gate
            by_name = {p.name: p for p in e.params}
            for p in e.params:
                if not p.searched:
                    continue
                parent, values = gate
                init = by_name.get("init")
                if p.name == "init_scale" and init is not None and init.searched:
                    parent = f"{e.name}.init"
                    values = tuple(v for v in init.choices if v in SCALED_INITS)
                decisions.append(p.decision(f"{e.name}.{p.name}", parent, values))
            if e.layers is not None and not e.layers.shared:
                bl = bind_layers(e.layers, e.name, self.num_layers, where)
                self._layers[e.name] = bl
                decisions.extend(bl.decisions(*gate))
        self._shared: BoundLayers | None = None
        if space.shared_layers is not None:
            self._shared = bind_layers(space.shared_layers, "shared", self.num_layers, where)
            decisions.extend(self._shared.decisions(None, ()))
        for p in space.hyperparameters:
            if p.searched:
                decisions.append(p.decision(f"hp.{p.name}", None, ()))
        self.decisions: tuple[Decision, ...] = tuple(decisions)
        self._by_name = {d.name: d for d in self.decisions}

    def _check_hidden(self, hidden: int) -> None:
        for e in self.space.entries:
            for p in e.params:
                if p.name not in HIDDEN_BOUNDED:
                    continue
                too_big = [v for v in p.values() if isinstance(v, (int, float)) and v > hidden]
                if too_big:
                    raise self.space.where.error(
                        p.path, f"{p.name} {show(too_big[0])} is larger than the model's hidden "
                                f"size {hidden}", too_big[0],
                        fix=f"keep {e.name}.{p.name} <= {hidden} for this model")

    # ----------------------------------------------------------------- basics
    @property
    def name(self) -> str:
        return self.space.name

    @property
    def fingerprint(self) -> str:
        return self.space.fingerprint

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.decisions)

    def decision(self, name: str) -> Decision:
        return self._by_name[name]

    def __len__(self) -> int:
        return len(self.decisions)

    def __repr__(self) -> str:
        return (f"BoundSpace({self.name!r}, num_layers={self.num_layers}, "
                f"decisions={len(self.decisions)})")

    def is_active(self, decision: Decision | str, partial: Mapping[str, Any]) -> bool:
        """Active iff it has no parent, or its parent is assigned (so was active) and its
        value is one of parent_values. `partial` holds the decisions made so far."""
        d = self._by_name[decision] if isinstance(decision, str) else decision
        if d.parent is None:
            return True
        return d.parent in partial and d.parent_accepts(partial[d.parent])

    # ----------------------------------------------------------------- walking
    def walk(self, suggest: Callable[[Decision], Any]) -> dict[str, Any]:
        """Define-by-run: call `suggest(decision)` for each active decision, in order;
        return the assignment. A suggested value outside the decision raises SpaceError."""
        out: dict[str, Any] = {}
        for d in self.decisions:
            if not self.is_active(d, out):
                continue
            value = plain(suggest(d))
            if not d.contains(value):
                raise self._bad(d, value, "suggested")
            out[d.name] = d.canonical_value(value)
        return out

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniform random assignment (active decisions only), drawn with `rng`."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError("sample() needs a numpy Generator: pass "
                            "numpy.random.default_rng(seed)")
        return self.walk(lambda d: d.sample(rng))

    def validate(self, assignment: Mapping[str, Any]) -> None:
        """SpaceError unless `assignment` gives exactly the active decisions legal values."""
        where = self.space.where
        if not isinstance(assignment, Mapping):
            raise where.error("", f"an assignment must be a mapping, got {show(assignment)}",
                              assignment, fix="pass {decision name: value}")
        for key in assignment:
            if key not in self._by_name:
                raise where.error("", f"assignment names unknown decision {key!r}", key,
                                  fix=did_you_mean(key, self._by_name))
        for d in self.decisions:
            active = self.is_active(d, assignment)
            if active and d.name not in assignment:
                raise where.error(d.path, f"assignment lacks active decision {d.name!r}",
                                  None, fix="give every active decision a value "
                                            "(BoundSpace.walk does it in order)")
            if not active and d.name in assignment:
                raise where.error(d.path, f"assignment gives {d.name!r}, which is inactive "
                                  f"({d.parent} = {show(assignment.get(d.parent))})",
                                  assignment[d.name], fix="leave inactive decisions out")
            if active and not d.contains(assignment[d.name]):
                raise self._bad(d, assignment[d.name], "assigned")

    def _bad(self, d: Decision, value: Any, how: str) -> SpaceError:
        legal = (f"one of {show(list(d.choices))}" if not d.is_range
                 else f"{d.kind} in [{d.low}, {d.high}]" + (f" step {d.step}" if d.step else ""))
        return self.space.where.error(d.path, f"{how} value {show(value)} is not legal for "
                                      f"decision {d.name!r}", value, fix=f"use {legal}")

    # ----------------------------------------------------------------- encoding
    def encode(self, assignment: Mapping[str, Any]) -> list[int]:
        """One option index per decision (-1 when inactive). A range value becomes the
        nearest point of its `levels` grid, so decode(encode(a)) may round ranges."""
        self.validate(assignment)
        return [d.index_of(assignment[d.name]) if d.name in assignment else -1
                for d in self.decisions]

    def decode(self, codes: list[int]) -> dict[str, Any]:
        """The assignment for one option index per decision; codes of inactive decisions
        are ignored (so a controller may emit a code for every decision)."""
        if len(codes) != len(self.decisions):
            raise ValueError(f"decode needs {len(self.decisions)} codes, got {len(codes)}")
        out: dict[str, Any] = {}
        for d, code in zip(self.decisions, codes):
            if not self.is_active(d, out):
                continue
            opts = d.options()
            code = int(code)
            if not 0 <= code < len(opts):
                raise ValueError(f"code {code} out of range for decision {d.name!r} "
                                 f"({len(opts)} options)")
            out[d.name] = copy.deepcopy(opts[code])
        return out

    # ----------------------------------------------------------------- candidates
    def to_candidate(self, assignment: Mapping[str, Any]) -> Candidate:
        """The Candidate an assignment means: entries switched on, in file order; a size
        parameter of 0 or an empty layer set drops the module."""
        self.validate(assignment)
        modules = []
        for e in self.space.entries:
            gate, values = self._gates[e.name]
            if gate is not None and same_key(assignment[gate]) not in {same_key(v) for v in values}:
                continue
            params: dict[str, Any] = {}
            for p in e.params:
                key = f"{e.name}.{p.name}"
                if key in assignment:
                    params[p.name] = self._by_name[key].canonical_value(assignment[key])
                elif p.searched:  # an inactive conditional parameter: the type's default
                    params[p.name] = e.module_type.param(p.name).default
                else:
                    params[p.name] = copy.deepcopy(p.value)
            size = e.module_type.size_param
            if size is not None and params.get(size) == 0:
                continue
            layers = None
            if e.layers is not None:
                bound = self._shared if e.layers.shared else self._layers[e.name]
                layers = bound.pick(assignment)
                if not layers:
                    continue
            modules.append(ModuleConfig(e.type, params, layers))
        hyper = {}
        for p in self.space.hyperparameters:
            key = f"hp.{p.name}"
            hyper[p.name] = self._by_name[key].canonical_value(assignment[key]) \
                if p.searched else copy.deepcopy(p.value)
        return Candidate(tuple(modules), hyper, self.num_layers)

    # ----------------------------------------------------------------- size
    def cardinality(self) -> tuple[int | None, float]:
        """(number of distinct assignments, its log10). Ranges count at their `levels`
        grid; conditions are respected (an inactive subtree counts once). This counts
        assignments, not distinct candidates (size 0 with different other settings is
        the same empty module)."""
        children: dict[str, list[Decision]] = {}
        roots = []
        for d in self.decisions:
            (children.setdefault(d.parent, []) if d.parent else roots).append(d)

        memo: dict[str, int] = {}

        def count(d: Decision) -> int:
            if d.name in memo:
                return memo[d.name]
            kids = children.get(d.name, [])
            total = 0
            for opt in d.options():
                n = 1
                for k in kids:
                    if k.parent_accepts(opt):
                        n *= count(k)
                total += n
            memo[d.name] = total
            return total

        exact = 1
        for d in roots:
            exact *= count(d)
        return exact, math.log10(exact)

    def describe(self) -> list[dict[str, Any]]:
        """The decisions as JSON-safe dicts (for `autopeft space check --json`)."""
        return [d.to_dict() for d in self.decisions]
