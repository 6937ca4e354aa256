"""The CSV table that bench_controllers.py replays: from a study, or measured with repeats.

Export a study's finished trials (how experiments/data/trials_default.csv was made):

    cd experiments/data
    autopeft search --space default.yaml --experiment default.yaml --controller random \\
        --trials 300 --study table-default --seed 0 \\
        --storage sqlite:///$PWD/table_default.db
    python ../make_table.py --storage sqlite:///$PWD/table_default.db \\
        --study table-default --out trials_default.csv

Random proposals on purpose: the table should cover the space without a controller's bias.
Every row is one real proxy evaluation (real MiniLM, real TREC-6 training). That table has
ONE measurement per proposal, so bench_controllers can only estimate the measurement noise
from rows that share a discrete configuration (after removing their learning-rate trend).

Measure every discrete configuration `--repeats` times (different trial seeds), so the
noise is measured, not inferred:

    python experiments/make_table.py --collect --space default.yaml \\
        --experiment default.yaml --repeats 2 --out experiments/data/trials_repeats.csv
    python experiments/bench_controllers.py --table experiments/data/trials_repeats.csv

The grid is every combination of `decision.options()` (a range at its `levels`; in
default.yaml each module type's own learning-rate range, at 4 levels), in a seeded
shuffled order, so a partial run covers the space evenly. Each trial is appended and
flushed as it ends, and a rerun skips the (configuration, repeat) pairs already in the
file: stop it at any time and run the same command to continue. The space file is copied
beside the table (<out stem>_space.yaml), which is where bench_controllers.py looks for
it; a rerun against a different space is refused. `--dry-run` prints the grid size, the
trials still to run and their estimated CPU time, and writes nothing. The current
default.yaml has 244 configurations: 488 trials at --repeats 2, about 2.4 h at ~18 s per
default proxy trial on one core (use --limit to cap a run).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

TRIAL_SECONDS = 18.0  # one default proxy trial (experiments/default.yaml) on one core, here
COLUMNS = ("number", "state", "key", "assignment", "reward", "metric", "params_ratio",
           "flops_ratio", "feasible", "train_seconds", "summary", "source", "repeat", "seed",
           "intermediate", "cpu_seconds")
# flops_ratio: as deployed (merging modules merged), what the reward counts;
# intermediate: the trial's [[step, validation metric], ...] (a pruner can be replayed);
# cpu_seconds: the trial's CPU time


class _Branch(Exception):
    def __init__(self, options: int) -> None:
        self.options = options


def grid(space: Any) -> Iterator[dict[str, Any]]:
    """Every assignment made of decision options (conditional decisions only where
    active), depth first in the space's decision order."""
    stack: list[list[int]] = [[]]
    while stack:
        prefix = stack.pop()
        taken: list[int] = []

        def suggest(decision: Any, prefix: list[int] = prefix, taken: list[int] = taken
                    ) -> Any:
            if len(taken) == len(prefix):
                raise _Branch(len(decision.options()))
            taken.append(prefix[len(taken)])
            return decision.options()[taken[-1]]

        try:
            yield space.walk(suggest)
        except _Branch as b:
            stack.extend(prefix + [k] for k in reversed(range(b.options)))


def _row(number: int, state: str, cand: Any, assignment: Any, metrics: Any,
         score: Any, **extra: Any) -> dict[str, Any]:
    ok = state == "complete" and metrics is not None and score is not None
    return {
        "number": number, "state": state, "key": cand.key(),
        "assignment": json.dumps(dict(assignment), sort_keys=True),
        "reward": f"{score.reward:.6f}" if ok else "",
        "metric": f"{metrics.metric:.6f}" if ok else "",
        "params_ratio": "" if metrics is None else f"{metrics.cost.params_ratio:.8f}",
        "flops_ratio": "" if metrics is None else f"{metrics.cost.deployed_flops_ratio:.8f}",
        "feasible": "" if score is None else int(bool(score.feasible)),
        "train_seconds": "" if metrics is None else f"{metrics.train_seconds:.2f}",
        "summary": cand.summary(), "source": "measured",
        "intermediate": "" if metrics is None else json.dumps(
            [[int(s), round(float(v), 6)] for s, v in metrics.intermediate]),
        "cpu_seconds": "" if metrics is None or metrics.extra.get("cpu_seconds") is None
        else f"{metrics.extra['cpu_seconds']:.2f}", **extra,
    }


def export(args: argparse.Namespace) -> int:
    from autopeft.candidate import Candidate
    from autopeft.records import TrialState
    from autopeft.storage import open_storage

    storage = open_storage(args.storage)
    rows = []
    for t in storage.get_trials(args.study):
        if not t.state.finished:
            continue
        cand = Candidate.from_dict(t.candidate)
        ok = t.state == TrialState.COMPLETE and t.reward is not None
        score = argparse.Namespace(reward=t.reward, feasible=t.feasible) if ok else None
        row = _row(t.number, t.state.value, cand, t.assignment, t.metrics, score,
                   repeat="", seed="")
        row["feasible"] = "" if t.feasible is None else int(bool(t.feasible))
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} finished trials of {args.study} -> {args.out}")
    return 0


def collect(args: argparse.Namespace, evaluator: Any = None) -> int:
    """Measure each grid configuration `repeats` times; append rows to args.out."""
    from autopeft.config import load_experiment
    from autopeft.evaluation.base import NullReporter, make_evaluator
    from autopeft.exceptions import TrialFailedError
    from autopeft.models import model_info
    from autopeft.records import EvalRequest
    from autopeft.resources import resolve
    from autopeft.reward import score as reward_score
    from autopeft.space import load_space
    from autopeft.exceptions import SpaceError

    experiment = load_experiment(args.experiment)
    exp = experiment.to_dict()
    info = model_info(experiment.model)
    space_path = resolve(args.space, "search_spaces", error=SpaceError)
    space = load_space(space_path).bind(num_layers=info.num_layers,
                                        hidden_size=info.hidden_size)
    configs = list(grid(space))
    order = np.random.default_rng(args.seed).permutation(len(configs))
    done: set[tuple[str, str]] = set()
    if args.out.is_file():
        with args.out.open(newline="", encoding="utf-8") as fh:
            done = {(r["key"], r["repeat"]) for r in csv.DictReader(fh)}
    todo = [(r, int(i)) for i in order for r in range(args.repeats)]
    todo.sort(key=lambda t: t[0])  # every configuration once before any twice
    todo = [(r, i) for r, i in todo
            if (space.to_candidate(configs[i]).key(), str(r)) not in done][:args.limit]
    hours = len(todo) * TRIAL_SECONDS / 3600
    print(f"{space.name}: {len(configs)} configurations x {args.repeats} repeats = "
          f"{len(configs) * args.repeats} trials; {len(done)} rows in {args.out}, "
          f"{len(todo)} to measure now (~{hours:.1f} h at ~{TRIAL_SECONDS:.0f} s per "
          f"default proxy trial on one core)", file=sys.stderr)
    if args.dry_run:
        return 0
    space_copy = args.out.with_name(args.out.stem + "_space.yaml")
    text = space_path.read_text(encoding="utf-8")
    if space_copy.is_file() and space_copy.read_text(encoding="utf-8") != text:
        print(f"{space_copy} holds another space than {space_path}: this table was measured "
              f"on that one; write to another --out, or remove both files to start over",
              file=sys.stderr)
        return 2
    evaluator = evaluator or make_evaluator(exp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    space_copy.write_text(text, encoding="utf-8")
    new = not args.out.is_file() or args.out.stat().st_size == 0
    with args.out.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for n, (repeat, i) in enumerate(todo, start=len(done)):
            cand = space.to_candidate(configs[i])
            seed = args.seed * 1000 + repeat  # repeats differ in data order, init, dropout
            request = EvalRequest(study="table", trial_number=n, candidate=cand.to_dict(),
                                  experiment=exp, seed=seed)
            try:
                metrics = evaluator.evaluate(request, NullReporter())
                state, score = "complete", reward_score(metrics, exp)
            except TrialFailedError as exc:
                print(f"trial {n} failed: {exc}", file=sys.stderr)
                metrics, state, score = None, "failed", None
            writer.writerow(_row(n, state, cand, configs[i], metrics, score,
                                 repeat=repeat, seed=seed))
            fh.flush()
            print(f"{n}: {cand.summary()} repeat {repeat}: "
                  f"{'failed' if score is None else f'{score.reward:.4f}'}", file=sys.stderr)
    print(f"{len(done) + len(todo)} rows -> {args.out}")
    return 0


def main(argv: list[str] | None = None, evaluator: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--storage", help="export: the study's storage URL")
    ap.add_argument("--study", help="export: the study's name")
    ap.add_argument("--collect", action="store_true",
                    help="measure the space's grid of configurations instead of exporting")
    ap.add_argument("--space", default="default.yaml")
    ap.add_argument("--experiment", default="default.yaml")
    ap.add_argument("--repeats", type=int, default=2, help="collect: trials per configuration")
    ap.add_argument("--limit", type=int, default=None, help="collect: at most N trials now")
    ap.add_argument("--seed", type=int, default=0, help="collect: grid order and trial seeds")
    ap.add_argument("--dry-run", action="store_true",
                    help="collect: print the grid size, trials to run and estimated time; "
                         "write nothing")
    args = ap.parse_args(argv)
    if args.collect:
        if args.repeats < 1:
            ap.error("--repeats must be at least 1")
        return collect(args, evaluator)
    if not args.storage or not args.study:
        ap.error("export needs --storage and --study (or pass --collect)")
    return export(args)


if __name__ == "__main__":
    raise SystemExit(main())
