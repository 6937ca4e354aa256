"""Standard PEFT recipes, expressed as assignments of a bound space.

A study begins with the standard configurations its space can express (issue 11: the
search must never answer worse on validation than the best standard recipe in its space).
Each recipe names a module type, the parameters that define it (`params`: must be taken
exactly), the ones it would like (`prefer`: the nearest value the space allows), and a
learning rate that suits its type. Everything else takes the type's default where the
space allows it, else the nearest value the space allows; every layer is used.

`express(bound)` returns the recipes the space can express, in priority order, and one
note per recipe it cannot (why). Adding a recipe is one entry in RECIPES.

The full fine-tuning reference (FULL_FINETUNING, every weight trainable) is not in
RECIPES. It answers "how close to full fine-tuning", but as a search trial it can never be
the answer: its params_ratio is 1.0, infeasible under the default constraint (trainable
parameters <= 5 %), so by default it would only spend budget, and no shipped space has a
`full` entry. It runs (a) in a study whose space has an entry of type `full`, after the
standard recipes (the space asked for it; still infeasible under max_params_ratio, it
stands in `show` as the reference), and (b) in benchmarks, trained directly:
`recipe_candidate(FULL_FINETUNING, num_layers)` (experiments/bench_search.py).

Learning rates: measured with default proxy trials (MiniLM, TREC-6, 150 steps x 16),
the figures below and in search_spaces/default.yaml next to each module's range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.moduletypes import HYPERPARAMETERS, MODULE_TYPES
from autopeft.space.decision import Decision, same_key


@dataclass(frozen=True)
class Recipe:
    name: str
    type: str
    params: Mapping[str, Any] = field(default_factory=dict)   # exactly these
    prefer: Mapping[str, Any] = field(default_factory=dict)   # the nearest allowed
    learning_rate: float = 1e-3
    doc: str = ""


# Priority order: with a budget below len(RECIPES) the first ones run. The rates, from
# experiments/data/trials_default.csv (default proxy, TREC-6; validation accuracy):
#   lora r=8 q,v 2e-3: 0.860 (r=8 at 2.0e-3 on q,k,v,o: 0.918; issue 11: 0.904 at 3e-3;
#                      3 of 10 LoRA trials above 3.5e-3 diverged)
#   pfeiffer 4e-3: 0.904/0.906 (size 64, 4.0e-3/4.3e-3)  houlsby 2e-3: 0.900 (2.3e-3)
#   parallel 1e-3: 0.910 (size 64, 9e-4; collapses at 1.8e-3, 2.4e-3)
#   ia3 1e-2: 0.886/0.888 (9.8e-3/9.9e-3)  bitfit 6e-3: 0.884/0.882 (5.7e-3/5.9e-3)
#   prefix 1e-2: 0.70-0.77 (7.5e-3..9.6e-3; length 8-32)
RECIPES: tuple[Recipe, ...] = (
    Recipe("lora_r8_qv", "lora", {"rank": 8, "targets": ["q", "v"]}, learning_rate=2e-3,
           doc="LoRA r=8 on query and value (Hu et al. 2021)"),
    Recipe("pfeiffer_adapter", "adapter", {"placement": "pfeiffer"}, {"size": 64},
           learning_rate=4e-3, doc="serial adapter after the FFN (Pfeiffer et al. 2021)"),
    Recipe("houlsby_adapter", "adapter", {"placement": "houlsby"}, {"size": 64},
           learning_rate=2e-3, doc="serial adapters after attention and FFN (Houlsby 2019)"),
    Recipe("parallel_adapter", "parallel_adapter", {}, {"size": 64}, learning_rate=1e-3,
           doc="parallel adapter beside the FFN (He et al. 2022)"),
    Recipe("ia3", "ia3", learning_rate=1e-2, doc="IA3 on keys, values, FFN (Liu et al. 2022)"),
    Recipe("bitfit", "bitfit", learning_rate=6e-3, doc="biases only (Ben Zaken et al. 2022)"),
    Recipe("prefix_tuning", "prefix", {}, {"length": 16}, learning_rate=1e-2,
           doc="16 key/value prefixes per layer (Li & Liang 2021)"),
)


# Full fine-tuning needs a learning rate 1-2 orders of magnitude below the PEFT modules'
# (every pretrained weight moves). Measured with default proxy trials (MiniLM, TREC-6, 150
# steps x 16, seed 0; experiments/measure_lr.py --plan full=<lr>), validation accuracy:
#   2e-5: 0.514   5e-5: 0.878   1e-4: 0.918   2e-4: 0.926   4e-4: 0.908
# (LoRA r=8 on q,v at its 2e-3: 0.860-0.904). 1e-4 rather than the proxy's 2e-4: within
# one seed's noise of it there, and finalize's schedule is ~5x longer. On that schedule
# (`measure_lr.py --fidelity full --plan full=1e-4`: whole train split, 3 epochs, 810
# steps, 877 s at load 5) 1e-4 reached 0.952, still rising at the end, no instability;
# other rates were not tried on the full schedule.
FULL_FT_LR = 1e-4
FULL_FINETUNING = Recipe("full_finetuning", "full", learning_rate=FULL_FT_LR,
                         doc="every weight trainable: the reference, not a PEFT method")
REFERENCES: tuple[Recipe, ...] = (FULL_FINETUNING,)


@dataclass(frozen=True)
class Expressed:
    recipe: Recipe
    assignment: dict[str, Any]
    entry: str                               # the space entry that carries it
    notes: tuple[str, ...] = ()              # where the space made it approximate

    @property
    def name(self) -> str:
        return self.recipe.name


class _Skip(Exception):
    pass


def express(bound: Any, recipes: tuple[Recipe, ...] = RECIPES,
            references: tuple[Recipe, ...] = REFERENCES) -> tuple[list[Expressed], list[str]]:
    """(the recipes `bound` can express, in order; one note per skipped recipe).

    `references` come after `recipes`, and only when the space has an entry of their type
    (no note otherwise: a space without one did not ask for them)."""
    done: list[Expressed] = []
    skipped: list[str] = []
    types = {e.type for e in bound.space.entries}
    for r in tuple(recipes) + tuple(x for x in references if x.type in types):
        if r.type not in MODULE_TYPES:
            skipped.append(f"recipe {r.name}: module type {r.type!r} is not available")
            continue
        entries = [e for e in bound.space.entries if e.type == r.type]
        if not entries:
            skipped.append(f"recipe {r.name}: the space has no {r.type} entry")
            continue
        reasons = []
        for e in entries:
            try:
                done.append(_express(bound, r, e))
                break
            except _Skip as why:
                reasons.append(f"{e.name}: {why}")
        else:
            skipped.append(f"recipe {r.name}: " + "; ".join(reasons))
    return done, skipped


def recipe_candidate(r: Recipe, num_layers: int) -> Candidate:
    """The recipe as a candidate outside any space (benchmarks train it directly): its
    params, then its preferred values, the type's defaults for the rest, every layer, and
    its learning rate."""
    spec = MODULE_TYPES[r.type]
    params = {**{k: list(v) if isinstance(v, tuple) else v for k, v in r.prefer.items()},
              **r.params}
    layers = list(range(num_layers)) if spec.layered else None
    return Candidate((ModuleConfig(r.type, params, layers),),
                     {"learning_rate": r.learning_rate}, num_layers)


def _express(bound: Any, r: Recipe, e: Any) -> Expressed:
    notes: list[str] = []
    default = {p.name: p.default for p in MODULE_TYPES[r.type].params}
    entries = {x.name: x for x in bound.space.entries}

    def suggest(d: Decision) -> Any:
        head, _, rest = d.name.partition(".")
        if d.name == "module":
            return e.name
        if head == "hp":
            return _hyper(d, rest)
        if head == "shared" or head == e.name:
            if rest == "on":
                return True
            if rest.startswith("hp."):
                return _hyper(d, rest[3:])
            if rest == "layers":
                return _all_layers(d)
            if rest.startswith("layers."):
                return True  # every mask bit / group on
            if rest in r.params:
                if not d.contains(r.params[rest]):
                    raise _Skip(f"{rest} cannot be {r.params[rest]!r} here "
                                f"({_legal(d)})")
                return r.params[rest]
            want = r.prefer.get(rest, default.get(rest))
            return _nearest(d, want, notes, rest if rest in r.prefer else None)
        # another entry: off, or (required) switched off by size 0 or no layer
        other = entries[head]
        if rest == "on":
            return False
        if rest.startswith("layers."):
            return False
        if rest == other.module_type.size_param and d.contains(0):
            return 0
        return d.options()[0]  # (the module is dropped, or _check skips the recipe)

    def _hyper(d: Decision, name: str) -> Any:
        if name == "learning_rate":
            return _nearest(d, r.learning_rate, notes, "learning_rate")
        return _nearest(d, HYPERPARAMETERS[name].default, notes, None)

    assignment = bound.walk(suggest)
    cand = bound.to_candidate(assignment)
    _check(bound, r, cand)
    lr = cand.modules[0].hyper.get("learning_rate", cand.hyper.get("learning_rate"))
    if lr is None:
        notes.append("the space has no learning rate: it trains at the experiment's")
    elif not any(n.startswith("learning_rate") for n in notes) and \
            not math.isclose(lr, r.learning_rate):
        notes.append(f"the space fixes its learning rate at {lr:g}")
    return Expressed(r, assignment, e.name, tuple(notes))


def _check(bound: Any, r: Recipe, cand: Candidate) -> None:
    """The candidate is the recipe: one module of its type, on every layer."""
    others = [m.type for m in cand.modules if m.type != r.type]
    if others:
        raise _Skip(f"the space always adds {' + '.join(others)}")
    if not cand.modules:
        raise _Skip("its size 0 or an empty layer set drops the module")
    m = cand.modules[0]
    if m.layers is not None and m.layers != tuple(range(bound.num_layers)):
        raise _Skip("it cannot be put on every layer")
    for k, v in r.params.items():
        got = list(m.params[k]) if isinstance(m.params[k], tuple) else m.params[k]
        if same_key(got) != same_key(v):
            raise _Skip(f"{k} cannot be {v!r} here")


def _all_layers(d: Decision) -> Any:
    """The layer option that can mean every layer: all, then mask, then groups."""
    def rank(opt: Any) -> int:
        if opt == "all":
            return 0
        if opt == "mask":
            return 1
        if isinstance(opt, dict) and "groups" in opt:
            return 2
        if isinstance(opt, dict) and any(v == 1.0 for k, v in opt.items()
                                         if k in ("first", "last")):
            return 3
        return 9
    return min(d.options(), key=rank)


def _legal(d: Decision) -> str:
    if d.is_range:
        return f"range {d.low}..{d.high}"
    return "choices " + ", ".join(map(str, d.options()))


def _nearest(d: Decision, want: Any, notes: list[str], label: str | None) -> Any:
    """`want` if legal; else the nearest legal value (log distance for positive
    numbers); a non-numeric wish that is not legal falls back to the first option."""
    if want is not None and d.contains(want):
        return want
    numeric = isinstance(want, (int, float)) and not isinstance(want, bool)
    if numeric and d.is_range and not d.step:
        x = min(max(float(want), float(d.low)), float(d.high))
        got: Any = int(round(x)) if d.kind == "int" else x
    else:
        nums = [o for o in d.options() if isinstance(o, (int, float))
                and not isinstance(o, bool)]
        got = min(nums, key=lambda o: _distance(o, want)) if numeric and nums \
            else d.options()[0]
    if label is not None:
        notes.append(f"{label} {want!r} -> {got!r} (the nearest the space allows)")
    return got


def _distance(a: float, b: float) -> float:
    if a > 0 and b > 0:
        return abs(math.log(a) - math.log(b))
    return abs(a - b) + (1e9 if (a > 0) != (b > 0) else 0.0)
