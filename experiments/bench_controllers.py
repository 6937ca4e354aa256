"""Replay controllers against a table of measured trials: best reward vs trials.

    python experiments/bench_controllers.py                       # the real table
    python experiments/bench_controllers.py --synthetic 400       # a made-up table (tests)

The table (CSV, default experiments/data/trials_default.csv) has one row per measured
trial on one space:
    assignment    JSON of the space assignment (required: proposals are matched on it)
    reward        the study's reward, higher is better; empty or NaN = a failed trial
    key           optional, Candidate.key(); computed from the assignment when missing
    params_ratio, flops_ratio   optional costs (0 when missing)
    source        optional; "synthetic" marks made-up rows (the plot and output say so)
Rows with the same key are averaged.

Replay: each controller proposes as in a study (one trial at a time), and each proposal is
scored with the table. A proposal measured in the table (same candidate key) gets its
reward; any other is mapped to the NEAREST MEASURED CANDIDATE by Hamming distance between
`space.encode` codes (one option index per decision, -1 when inactive; ties go to the
earlier row), and gets that row's reward. So the replay measures how fast a controller
finds good regions of the measured set, not the true value of unmeasured candidates; the
mean mapping distance is printed per controller so a sparse table is visible. PBT is
replayed without its weight inheritance (each of its trials scores as a fresh training
of its config): a table cannot hold chains of warm-started runs.

Output: a table of median best-so-far reward over seeds, a PNG plot (median and
inter-quartile band), and as the last line:
    tpe_trials_to_match_random60=<n> lstm_minus_random_at100=<d>
n = the first trial count at which TPE's median best reaches random's median best at 60
trials ("none" if not within the budget); d = LSTM's minus random's median best at 100.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from autopeft.controllers import make_controller
from autopeft.records import Cost, Proposal
from autopeft.space import load_space
from autopeft.testing.fakes import Driver, synthetic_table

HERE = Path(__file__).resolve().parent
DEFAULT_TABLE = HERE / "data" / "trials_default.csv"
CONTROLLERS = ("random", "tpe", "lstm", "pbt")
CHECKPOINTS = (10, 20, 40, 60, 80, 100, 150, 200)

logger = logging.getLogger("bench_controllers")


class Table:
    """Measured trials, indexed by candidate key and by encoding for nearest lookups."""

    def __init__(self, space: Any, rows: Sequence[dict[str, Any]]) -> None:
        self.space = space
        grouped: dict[str, list[dict[str, Any]]] = {}
        for i, row in enumerate(rows):
            if "assignment" not in row or "reward" not in row:
                raise ValueError(f"row {i} lacks an 'assignment' or 'reward' column: "
                                 f"{sorted(row)}")
            a = json.loads(row["assignment"]) if isinstance(row["assignment"], str) \
                else dict(row["assignment"])
            key = row.get("key") or space.to_candidate(a).key()
            grouped.setdefault(key, []).append({**row, "assignment": a})
        self.keys = list(grouped)
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.assignments = [g[0]["assignment"] for g in grouped.values()]
        self.rewards = np.array([_mean(r.get("reward") for r in g) for g in grouped.values()])
        self.params = np.array([_mean([r.get("params_ratio") for r in g], 0.0)
                                for g in grouped.values()])
        self.flops = np.array([_mean([r.get("flops_ratio") for r in g], 0.0)
                               for g in grouped.values()])
        self.codes = np.array([space.encode(a) for a in self.assignments], dtype=int)
        self.synthetic = any(str(r.get("source", "")) == "synthetic"
                             for g in grouped.values() for r in g)

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, assignment: dict[str, Any]) -> tuple[int, int]:
        """(row, Hamming distance): the row of this candidate, else the nearest one."""
        key = self.space.to_candidate(assignment).key()
        if key in self.index:
            return self.index[key], 0
        dist = (self.codes != np.asarray(self.space.encode(assignment))).sum(axis=1)
        row = int(np.argmin(dist))  # argmin takes the first of equals: the earlier row
        return row, int(dist[row])

    @property
    def best(self) -> float:
        return float(np.nanmax(self.rewards))


def _mean(values: Any, missing: float = math.nan) -> float:
    xs = []
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            xs.append(x)
    return float(np.mean(xs)) if xs else missing


def read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def replay(table: Table, controller: str, seed: int, trials: int) -> tuple[np.ndarray, float]:
    """Best-so-far reward after 1..trials trials (NaN before the first success), and the
    mean Hamming distance of the proposals to the rows that scored them."""
    distances: list[int] = []

    def evaluate(number: int, proposal: Proposal) -> tuple[float | None, Cost]:
        row, d = table.lookup(dict(proposal.assignment))
        distances.append(d)
        cost = Cost(trainable_params=0, base_params=1, params_ratio=float(table.params[row]),
                    base_flops_per_token=1.0, extra_flops_per_token=0.0,
                    flops_ratio=float(table.flops[row]), flops_ratio_merged=0.0)
        r = float(table.rewards[row])
        return (r if math.isfinite(r) else None), cost

    settings: dict[str, Any] = {}
    if controller == "pbt":  # enough rounds to spend the whole budget
        pop = make_controller("pbt", table.space, 0).settings["population_size"]
        settings["rounds"] = math.ceil(trials / pop)
    ctrl = make_controller(controller, table.space, seed, **settings)
    driver = Driver(evaluate, parallel=1)
    driver.run(ctrl, trials)
    driver.drain(ctrl)
    rewards = [r.reward if r.reward is not None else -math.inf for r in driver.records]
    best = np.maximum.accumulate(np.array(rewards + [-math.inf] * (trials - len(rewards))))
    best[~np.isfinite(best)] = np.nan
    return best, float(np.mean(distances)) if distances else 0.0


def trials_to_match(curve: np.ndarray, target: float) -> int | None:
    hits = np.nonzero(np.nan_to_num(curve, nan=-math.inf) >= target)[0]
    return int(hits[0]) + 1 if len(hits) else None


def run(table: Table, controllers: Sequence[str], seeds: int, trials: int
        ) -> dict[str, dict[str, Any]]:
    results = {}
    for name in controllers:
        t0 = time.monotonic()
        curves, dists = zip(*(replay(table, name, s, trials) for s in range(seeds)))
        stack = np.vstack(curves)
        results[name] = {"median": np.nanmedian(stack, axis=0),
                         "q25": np.nanpercentile(stack, 25, axis=0),
                         "q75": np.nanpercentile(stack, 75, axis=0),
                         "distance": float(np.mean(dists)),
                         "seconds": time.monotonic() - t0}
        logger.info("%s: %d seeds in %.1fs", name, seeds, results[name]["seconds"])
    return results


def summary_line(results: dict[str, dict[str, Any]], trials: int) -> str:
    def at(name: str, t: int) -> float:
        return float(results[name]["median"][t - 1]) if name in results and t <= trials \
            else math.nan

    n = None
    if "tpe" in results and not math.isnan(at("random", 60)):
        n = trials_to_match(results["tpe"]["median"], at("random", 60))
    d = at("lstm", 100) - at("random", 100)
    return (f"tpe_trials_to_match_random60={n if n is not None else 'none'} "
            f"lstm_minus_random_at100={d:.4f}")


def plot(results: dict[str, dict[str, Any]], table: Table, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in results.items():
        x = np.arange(1, len(r["median"]) + 1)
        ax.plot(x, r["median"], label=name)
        ax.fill_between(x, r["q25"], r["q75"], alpha=0.2)
    ax.axhline(table.best, color="k", ls="--", lw=0.8, label="best in table")
    ax.set_xlabel("trials")
    ax.set_ylabel("best reward so far (median over seeds)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="ignore --table; replay on N made-up rows (autopeft.testing.fakes)")
    ap.add_argument("--space", default=str(HERE / "data" / "trials_default_space.yaml"),
                    help="the space the table was measured on (default: its own copy)")
    ap.add_argument("--num-layers", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--trials", type=int, default=150)
    ap.add_argument("--controllers", default=",".join(CONTROLLERS))
    ap.add_argument("--out", type=Path, default=HERE / "out" / "bench_controllers")
    args = ap.parse_args(argv)

    space = load_space(args.space).bind(num_layers=args.num_layers)
    if args.synthetic:
        rows = synthetic_table(space, args.synthetic, seed=0)
        write_csv(args.out / "synthetic_table.csv", rows)
    elif not args.table.is_file():
        print(f"no table at {args.table}; produce it with real trials first, or pass "
              f"--synthetic N to check the harness", file=sys.stderr)
        return 2
    else:
        rows = read_csv(args.table)
    table = Table(space, rows)
    label = "SYNTHETIC table (autopeft.testing.fakes) - not a result" if table.synthetic \
        else f"table {args.table.name}"
    controllers = [c for c in args.controllers.split(",") if c]
    results = run(table, controllers, args.seeds, args.trials)

    print(f"# {label}: {len(table)} measured candidates, best reward {table.best:.4f}; "
          f"space {space.name}; median best-so-far over {args.seeds} seeds")
    cps = [t for t in CHECKPOINTS if t <= args.trials]
    print(f"{'controller':<11}" + "".join(f"{'@' + str(t):>9}" for t in cps)
          + f"{'mean dist':>11}{'sec':>7}")
    for name, r in results.items():
        print(f"{name:<11}" + "".join(f"{r['median'][t - 1]:>9.4f}" for t in cps)
              + f"{r['distance']:>11.2f}{r['seconds']:>7.1f}")
    png = args.out / ("bench_controllers_synthetic.png" if table.synthetic
                      else "bench_controllers.png")
    plot(results, table, png, f"{label}\n{space.name}, {args.seeds} seeds")
    print(f"# plot: {png}")
    print(summary_line(results, args.trials))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    raise SystemExit(main())
