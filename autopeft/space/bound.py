"""BoundSpace: a space on a model of a given depth, with its decisions, conditions,
define-by-run walk, seeded sampling, flat encoding, cardinality and candidates."""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.exceptions import SpaceError
from autopeft.space.decision import Decision, plain, same_key
from autopeft.space.errors import did_you_mean, show
from autopeft.space.layers import BoundLayers, bind_layers
from autopeft.space.params import HIDDEN_BOUNDED, SCALED_INITS

if TYPE_CHECKING:  # space.py imports this module (SearchSpace.bind); never the reverse
    from autopeft.space.space import SearchSpace


class BoundSpace:
    """A space bound to a model: its decisions, sampling, encoding and candidates.

    Decision order (fixed; the flat encoding follows it): `module` (select: one with two
    or more entries); then per entry in file order: `<entry>.on` (select: any, unless
    required), its searched parameters in the module type's parameter order, its layer
    decisions (`<entry>.layers`, then `.layers.mask.<i>` / `.layers.group.<g>`), its own
    hyperparameters `<entry>.hp.<name>`; then the shared-layer decisions
    (`shared.layers...`); then `hp.<name>` in file order.

    An entry's own hyperparameter is active when the entry is. With select: one it
    replaces the top-level one, so `hp.<name>` is active only when an entry without its
    own is chosen (parent `module`); with select: any the top-level one stays active: it
    trains the classifier head and the modules without their own.
    """

    def __init__(self, space: "SearchSpace", num_layers: int, hidden_size: int | None = None):
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
            decisions.extend(p.decision(f"{e.name}.hp.{p.name}", *gate)
                             for p in e.hyper if p.searched)
        self._shared: BoundLayers | None = None
        if space.shared_layers is not None:
            self._shared = bind_layers(space.shared_layers, "shared", self.num_layers, where)
            decisions.extend(self._shared.decisions(None, ()))
        for p in space.hyperparameters:
            if not p.searched:
                continue
            users = tuple(e.name for e in space.entries
                          if p.name not in {h.name for h in e.hyper})
            if multi and len(users) < len(space.entries):  # (none: a SearchSpace error)
                decisions.append(p.decision(f"hp.{p.name}", "module", users))
            else:
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
        chosen_hyper: dict[str, Any] = {}  # select: one: the chosen entry's own values
        for e in self.space.entries:
            gate, values = self._gates[e.name]
            if gate is not None and same_key(assignment[gate]) not in {same_key(v) for v in values}:
                continue
            own = {p.name: self._value(f"{e.name}.hp.{p.name}", p, assignment)
                   for p in e.hyper}
            if self.space.select == "one":
                chosen_hyper, own = own, {}
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
            modules.append(ModuleConfig(e.type, params, layers, own))
        hyper = {p.name: self._value(f"hp.{p.name}", p, assignment)
                 for p in self.space.hyperparameters if p.name not in chosen_hyper}
        hyper.update(chosen_hyper)
        return Candidate(tuple(modules), hyper, self.num_layers)

    def _value(self, key: str, p: Any, assignment: Mapping[str, Any]) -> Any:
        """A hyperparameter's value: its decision's, or the fixed one."""
        if p.searched:
            return self._by_name[key].canonical_value(assignment[key])
        return copy.deepcopy(p.value)

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
