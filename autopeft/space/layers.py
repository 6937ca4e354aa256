"""Insertion-layer specs, written relative to the model so one space serves any depth.

Forms (N: an int >= 1, or a fraction 0 < f <= 1 of the model's layers, rounded half up,
at least 1; negative indices count from the end):

    all                       every layer
    {first: N} / {last: N}    the first / last N layers
    {indices: [0, 2, -1]}     an explicit list (a bare list [0, 2, -1] means the same)
    mask                      one on/off decision per layer: <prefix>.layers.mask.<i>
    {groups: G}               G contiguous groups, one on/off decision each:
                              <prefix>.layers.group.<g>
    shared                    the space's `shared_layers` (entries only)
    {choices: [...]}          a categorical decision <prefix>.layers between the forms
                              above (not `shared`); a mask or groups option brings its
                              on/off decisions, active only when that option is chosen

Nothing here knows the model until `resolve` is called with its layer count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from autopeft.space.decision import Decision, same_key
from autopeft.space.errors import Where, did_you_mean, join, show, type_name

FORM_WORDS = ("all", "mask")
FORM_KEYS = ("first", "last", "indices", "groups")
HELP = ("all, mask, shared, {first: N}, {last: N}, {indices: [0, 2, -1]}, {groups: G} or "
        "{choices: [...]}")


@dataclass(frozen=True)
class LayerForm:
    kind: str                       # all | first | last | indices | mask | groups
    n: int | float | None = None    # first/last N (or fraction), groups G
    indices: tuple[int, ...] = ()
    path: str = ""                   # YAML path of the value that says N, G or the list

    def value(self) -> Any:
        """The JSON-safe spelling: also the option value in a `<prefix>.layers` decision."""
        if self.kind in FORM_WORDS:
            return self.kind
        if self.kind == "indices":
            return {"indices": list(self.indices)}
        return {self.kind: self.n}

    @property
    def has_decisions(self) -> bool:
        return self.kind in ("mask", "groups")


@dataclass(frozen=True)
class LayerSpec:
    forms: tuple[LayerForm, ...] = ()
    choice: bool = False        # a `<prefix>.layers` decision between forms
    shared: bool = False        # use the space's shared_layers
    path: str = ""

    def canonical(self) -> Any:
        if self.shared:
            return "shared"
        if self.choice:
            return {"choices": [f.value() for f in self.forms]}
        return self.forms[0].value()


ALL = LayerSpec((LayerForm("all"),))


def parse_layers(raw: Any, path: str, where: Where, *, allow_shared: bool) -> LayerSpec:
    if raw == "shared":
        if not allow_shared:
            raise where.error(path, "`shared` cannot be used here", raw,
                              fix="write a layer form: " + HELP.replace("shared, ", ""))
        return LayerSpec(shared=True, path=path)
    if isinstance(raw, dict) and "choices" in raw:
        if len(raw) > 1:
            other = sorted(k for k in raw if k != "choices")[0]
            raise where.error(join(path, other), f"{other!r} cannot be combined with choices",
                              raw[other], fix="write {choices: [...]} alone")
        items = raw["choices"]
        at = join(path, "choices")
        if not isinstance(items, list) or not items:
            raise where.error(at, f"layer choices must be a non-empty list, got {show(items)}",
                              items, fix="write e.g. {choices: [all, {last: 3}, mask]}")
        forms, seen = [], {}
        for i, item in enumerate(items):
            if item == "shared" or (isinstance(item, dict) and "choices" in item):
                raise where.error(join(at, i), f"{show(item)} cannot be a layer choice", item,
                                  fix="list fixed forms: all, mask, {first: N}, {last: N}, "
                                      "{indices: [...]}, {groups: G}")
            form = parse_form(item, join(at, i), where)
            key = same_key(form.value())
            if key in seen:
                raise where.error(join(at, i), f"layer choice {show(item)} is listed twice",
                                  item, fix="remove the duplicate")
            seen[key] = i
            forms.append(form)
        groups = [f for f in forms if f.kind == "groups"]
        if len(groups) > 1:
            raise where.error(groups[1].path, "at most one {groups: G} option per layer "
                              "choice (their on/off decisions would share names)",
                              groups[1].value(), fix="keep one groups option")
        if len(forms) == 1:
            return LayerSpec((forms[0],), path=path)
        return LayerSpec(tuple(forms), choice=True, path=path)
    return LayerSpec((parse_form(raw, path, where),), path=path)


def parse_form(raw: Any, path: str, where: Where) -> LayerForm:
    if isinstance(raw, str):
        if raw in FORM_WORDS:
            return LayerForm(raw, path=path)
        raise where.error(path, f"unknown layer form {show(raw)}", raw,
                          fix=did_you_mean(raw, FORM_WORDS + ("shared",), listing=False)
                          + "forms: " + HELP)
    if isinstance(raw, list):
        return _indices(raw, path, where)
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise where.error(path, f"a layer form has exactly one key, got {show(raw)}", raw,
                              fix="forms: " + HELP)
        (key, val), = raw.items()
        at = join(path, str(key))
        if key == "indices":
            return _indices(val, at, where)
        if key in ("first", "last"):
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise where.error(at, f"{key} must be a layer count or a fraction, got "
                                  f"{show(val)} ({type_name(val)})", val,
                                  fix=f"write {{{key}: 3}} or {{{key}: 0.5}}")
            if isinstance(val, int) and val < 1:
                raise where.error(at, f"{key}: {val} selects no layer", val,
                                  fix=f"use {key}: N with N >= 1, or a fraction in (0, 1]")
            if isinstance(val, float) and not 0.0 < val <= 1.0:
                raise where.error(at, f"{key}: {val} is neither a layer count nor a fraction "
                                  "in (0, 1]", val,
                                  fix=f"write a whole number >= 1 or a fraction such as "
                                      f"{{{key}: 0.5}}")
            return LayerForm(key, n=val, path=at)
        if key == "groups":
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise where.error(at, f"groups must be an integer >= 1, got {show(val)}", val,
                                  fix="write {groups: 3} (3 contiguous groups, each on/off)")
            return LayerForm("groups", n=val, path=at)
        raise where.error(at, f"unknown layer form key {show(key)}", raw,
                          fix=did_you_mean(key, FORM_KEYS + ("choices",), listing=False)
                          + "forms: " + HELP)
    raise where.error(path, f"a layer spec cannot be {show(raw)} ({type_name(raw)})", raw,
                      fix="forms: " + HELP)


def _indices(raw: Any, path: str, where: Where) -> LayerForm:
    if not isinstance(raw, list) or not raw:
        raise where.error(path, f"layer indices must be a non-empty list of integers, got "
                          f"{show(raw)}", raw, fix="write e.g. {indices: [0, 2, -1]}")
    for i, v in enumerate(raw):
        if isinstance(v, bool) or not isinstance(v, int):
            raise where.error(join(path, i), f"layer index {show(v)} is not an integer", v,
                              fix="write whole numbers (negative ones count from the end); "
                                  "for a choice of forms write {choices: [...]}")
        if v in raw[:i]:
            raise where.error(join(path, i), f"layer index {v} is listed twice", v,
                              fix="remove the duplicate")
    return LayerForm("indices", indices=tuple(raw), path=path)


# --------------------------------------------------------------------------- binding

def _count(n: int | float, num_layers: int) -> int:
    if isinstance(n, float):
        return max(1, int(math.floor(n * num_layers + 0.5)))
    return n


@dataclass(frozen=True)
class BoundForm:
    """A form resolved on a model: fixed layers, or on/off units (mask: one layer each,
    groups: a contiguous block each) chosen by bool decisions."""

    form: LayerForm
    layers: tuple[int, ...] = ()
    units: tuple[tuple[int, ...], ...] = ()

    def decision_names(self, prefix: str) -> list[str]:
        word = "mask" if self.form.kind == "mask" else "group"
        return [f"{prefix}.layers.{word}.{i}" for i in range(len(self.units))]

    def pick(self, prefix: str, assignment: Mapping[str, Any]) -> tuple[int, ...]:
        if not self.form.has_decisions:
            return self.layers
        out: list[int] = []
        for name, unit in zip(self.decision_names(prefix), self.units):
            if assignment.get(name):
                out.extend(unit)
        return tuple(sorted(out))


def bind_form(form: LayerForm, num_layers: int, where: Where) -> BoundForm:
    L = num_layers
    if form.kind == "all":
        return BoundForm(form, tuple(range(L)))
    if form.kind == "mask":
        return BoundForm(form, units=tuple((i,) for i in range(L)))
    at = form.path
    if form.kind in ("first", "last"):
        n = _count(form.n, L)
        if n > L:
            raise where.error(at, f"{form.kind}: {form.n} asks for more layers than the "
                              f"{L}-layer model has", form.n,
                              fix=f"use {form.kind}: N with N <= {L}, or a fraction such as "
                                  f"{{{form.kind}: 0.5}} that scales with the model")
        return BoundForm(form, tuple(range(n)) if form.kind == "first"
                         else tuple(range(L - n, L)))
    if form.kind == "groups":
        g = int(form.n)
        if g > L:
            raise where.error(at, f"groups: {g} is more groups than the {L} layers of the "
                              "model", g, fix=f"use groups: G with G <= {L}, or mask")
        units = tuple(tuple(range(L * k // g, L * (k + 1) // g)) for k in range(g))
        return BoundForm(form, units=units)
    out: list[int] = []
    for i, idx in enumerate(form.indices):
        if not -L <= idx < L:
            raise where.error(join(at, i), f"layer index {idx} does not exist on a {L}-layer "
                              f"model", idx,
                              fix=f"use 0..{L - 1} (or -{L}..-1 from the end), or a relative "
                                  "form such as {last: 0.5}")
        absolute = idx % L
        if absolute in out:
            raise where.error(join(at, i), f"layer index {idx} names layer {absolute} again "
                              f"on a {L}-layer model", idx, fix="remove the duplicate")
        out.append(absolute)
    return BoundForm(form, tuple(sorted(out)))


@dataclass(frozen=True)
class BoundLayers:
    """A LayerSpec resolved on a model, with the decisions it adds."""

    prefix: str
    spec: LayerSpec
    forms: tuple[BoundForm, ...]

    def decisions(self, parent: str | None, parent_values: tuple) -> list[Decision]:
        out: list[Decision] = []
        if self.spec.choice:
            name = f"{self.prefix}.layers"
            out.append(Decision(name, "categorical", choices=tuple(b.form.value()
                                                                   for b in self.forms),
                                parent=parent, parent_values=parent_values,
                                path=self.spec.path))
        for b in self.forms:
            if not b.form.has_decisions:
                continue
            if self.spec.choice:
                p, pv = f"{self.prefix}.layers", (b.form.value(),)
            else:
                p, pv = parent, parent_values
            out.extend(Decision(n, "bool", choices=(False, True), parent=p, parent_values=pv,
                                path=b.form.path) for n in b.decision_names(self.prefix))
        return out

    def pick(self, assignment: Mapping[str, Any]) -> tuple[int, ...]:
        if not self.spec.choice:
            return self.forms[0].pick(self.prefix, assignment)
        chosen = same_key(assignment[f"{self.prefix}.layers"])
        for b in self.forms:
            if same_key(b.form.value()) == chosen:
                return b.pick(self.prefix, assignment)
        raise ValueError(f"{self.prefix}.layers: no such option")  # validate() prevents it


def bind_layers(spec: LayerSpec, prefix: str, num_layers: int, where: Where) -> BoundLayers:
    return BoundLayers(prefix, spec, tuple(bind_form(f, num_layers, where) for f in spec.forms))
