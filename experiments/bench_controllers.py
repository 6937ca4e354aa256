"""Replay controllers against a table of measured trials, with measurement noise and controls.

    python experiments/bench_controllers.py                       # the real table
    python experiments/bench_controllers.py --synthetic 400       # a made-up table (tests)
    python experiments/bench_controllers.py --table experiments/data/trials_repeats.csv

The table (CSV, default experiments/data/trials_default.csv) has one row per measured
trial on one space:
    assignment    JSON of the space assignment (required)
    reward        the study's reward, higher is better; empty or NaN = a failed trial
    params_ratio, flops_ratio   optional costs (0 when missing)
    source        optional; "synthetic" marks made-up rows (the plot and output say so)

Configurations. The replay works on DISCRETE configurations: `space.encode` codes (one
option index per decision, a range such as the learning rate rounded to its `levels`
grid). Rows with the same code are one configuration; its value is their mean reward. A
proposal whose code is not in the table scores as the NEAREST MEASURED configuration by
Hamming distance (ties: the earlier one); the mean distance is printed per controller.

Noise. One measurement is not the value of a configuration: retraining changes the score.
`estimate_noise` pools the residuals of the rows within each configuration after a
least-squares fit on the log of their range values (the rows of one configuration differ
in their exact learning rate, and that trend is not noise; exact repeats, from
`make_table.py --collect --repeats`, enter with no trend to remove). The sd is estimated
per band of configuration value, because a run stuck at chance varies less than one
half-way there. A replayed evaluation (`--noise`):
- gaussian (a table of single measurements, such as trials_default.csv): the
  configuration's value plus Gaussian noise of its band's sd;
- draw (the default for a table of repeats, such as make_table.py --collect writes): one
  of the configuration's own measured rows, picked at random, so the noise is the measured
  one, failures included; a configuration with a single row falls back to gaussian.
Draws come from a generator seeded by the replay seed.

The space. A table is replayed on the space it was measured on: by default the file
beside it, <table stem>_space.yaml (make_table.py --collect writes it), else --space.

Recipes. With --recipes every replay begins as a default study does: the standard recipes
the space can express (autopeft.controllers.recipes) are proposed first, counted in the
budget and told to the controller.

Score. What a user keeps is the configuration with the best OBSERVED reward; the curves
are its TRUE value (the table mean), so a controller gains nothing from one lucky draw.

Controls. `lstm-lr0` is the LSTM with learning rate 0 (a policy never updated, same
initial weights as `lstm` for the same seed); `tpe-startup` is TPE whose random startup
lasts the whole budget (its model never proposes). Every controller also runs on a
SHUFFLED table (configuration values permuted, seeded per replay seed): there is nothing
to learn there, so a "win" over random on it does not come from learning the table.

PBT is replayed without its weight inheritance (each trial scores as a fresh training of
its config): a table cannot hold chains of warm-started runs, so this does not judge PBT.

Output: for each controller the median [inter-quartile range] over seeds at checkpoints,
and mean ± standard error at 20/60/100 trials; the headline differences (LSTM minus its
untrained control, minus random, minus TPE; TPE minus its random startup), paired by
seed, ± standard error, with P(a beats b) (ties count half) and a '*' where the difference
is at least 2 standard errors, on the real and the shuffled table; a PNG; and as the last
line
    lstm_minus_untrained_at100=<x> lstm_minus_random_at100=<y> lstm_minus_tpe_at100=<z>
    tpe_minus_random_startup_at60=<w> noise_sd=<s> seeds=<n> se_...=<standard errors>
    lstm_learns=<yes if x >= 2 se_untrained, else no>
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
# name -> (controller preset, settings); None for n_startup_trials means "the budget"
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "tpe": ("tpe", {}),
    "tpe-startup": ("tpe", {"n_startup_trials": None}),
    "lstm": ("lstm", {}),
    "lstm-lr0": ("lstm", {"learning_rate": 0.0}),
    # the LSTM's rule before the reward model: policy gradient on the trials themselves
    "lstm-direct": ("lstm", {"learner": "direct"}),
    "pbt": ("pbt", {}),
}
CHECKPOINTS = (10, 20, 40, 60, 80, 100, 150, 200)
COMPARE_AT = (20, 60, 100)
BANDS = (0.5, 0.8)  # noise bands of configuration value: < 0.5, 0.5-0.8, >= 0.8

logger = logging.getLogger("bench_controllers")


class Table:
    """Measured configurations (by discrete code) with their mean reward and rows."""

    def __init__(self, space: Any, rows: Sequence[dict[str, Any]]) -> None:
        self.space = space
        grouped: dict[tuple[int, ...], list[dict[str, Any]]] = {}
        for i, row in enumerate(rows):
            if "assignment" not in row or "reward" not in row:
                raise ValueError(f"row {i} lacks an 'assignment' or 'reward' column: "
                                 f"{sorted(row)}")
            a = json.loads(row["assignment"]) if isinstance(row["assignment"], str) \
                else dict(row["assignment"])
            grouped.setdefault(tuple(space.encode(a)), []).append({**row, "assignment": a})
        self.groups = list(grouped.values())
        self.codes = np.array(list(grouped), dtype=int).reshape(len(grouped), -1)
        self.index = {c: i for i, c in enumerate(grouped)}
        self.rewards = np.array([_mean(r.get("reward") for r in g) for g in self.groups])
        self.params = np.array([_mean([r.get("params_ratio") for r in g], 0.0)
                                for g in self.groups])
        self.flops = np.array([_mean([r.get("flops_ratio") for r in g], 0.0)
                               for g in self.groups])
        self.synthetic = any(str(r.get("source", "")) == "synthetic"
                             for g in self.groups for r in g)
        # rows measured as exact repeats (make_table.py --collect): their spread IS the noise
        self.repeats = any(str(r.get("repeat", "")).strip() != "" for g in self.groups
                           for r in g)
        self.measured = [np.array([_mean([r.get("reward")]) for r in g]) for g in self.groups]

    def __len__(self) -> int:
        return len(self.groups)

    def lookup(self, assignment: dict[str, Any]) -> tuple[int, int]:
        """(configuration, Hamming distance): its own, else the nearest measured one."""
        code = np.asarray(self.space.encode(assignment))
        own = self.index.get(tuple(int(c) for c in code))
        if own is not None:
            return own, 0
        dist = (self.codes != code).sum(axis=1)
        i = int(np.argmin(dist))  # argmin takes the first of equals: the earlier one
        return i, int(dist[i])

    @property
    def best(self) -> float:
        return float(np.nanmax(self.rewards))


class Noise:
    """Measurement noise: a Gaussian sd per band of configuration value."""

    def __init__(self, sds: Sequence[float], overall: float, dof: Sequence[int]) -> None:
        self.sds, self.overall, self.dof = list(sds), float(overall), list(dof)

    def sd(self, value: float) -> float:
        return self.sds[int(np.searchsorted(BANDS, value, side="right"))]

    def describe(self) -> str:
        edges = ["<" + str(BANDS[0])] + [f"{a}-{b}" for a, b in zip(BANDS, BANDS[1:])] + \
            [">=" + str(BANDS[-1])]
        return ", ".join(f"{e}: {s:.4f} ({d} dof)" for e, s, d in
                         zip(edges, self.sds, self.dof)) + f"; pooled {self.overall:.4f}"


def _features(a: dict[str, Any]) -> list[float]:
    """log of the range values (floats) of an assignment: what differs inside a code."""
    return [math.log(v) if v > 0 else v for _, v in sorted(a.items())
            if isinstance(v, float)]


def estimate_noise(table: Table, fixed: float | None = None) -> Noise:
    """Pooled residual sd within configurations, per band; `fixed` overrides it."""
    if fixed is not None:
        return Noise([fixed] * (len(BANDS) + 1), fixed, [0] * (len(BANDS) + 1))
    ss = np.zeros(len(BANDS) + 1)
    dof = np.zeros(len(BANDS) + 1, dtype=int)
    for g, value in zip(table.groups, table.rewards):
        ok = [r for r in g if math.isfinite(_mean([r.get("reward")]))]
        y = np.array([float(r["reward"]) for r in ok])
        if len(y) < 2:
            continue
        x = np.array([[1.0, *_features(r["assignment"])] for r in ok])
        beta = np.linalg.lstsq(x, y, rcond=None)[0]
        rank = np.linalg.matrix_rank(x)
        if len(y) <= rank:
            continue
        band = int(np.searchsorted(BANDS, value, side="right"))
        ss[band] += float(((y - x @ beta) ** 2).sum())
        dof[band] += len(y) - rank
    if dof.sum() == 0:
        raise ValueError("no configuration has more rows than its trend fit needs: the "
                         "noise cannot be estimated; measure repeats (make_table.py "
                         "--repeats 2) or pass --noise-sd")
    overall = math.sqrt(ss.sum() / dof.sum())
    # a band with too few degrees of freedom borrows the pooled estimate
    sds = [math.sqrt(s / d) if d >= 5 else overall for s, d in zip(ss, dof)]
    return Noise(sds, overall, dof.tolist())


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


def shuffled_index(values: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of the configurations that moves only the measured (finite) ones."""
    idx = np.arange(len(values))
    ok = np.flatnonzero(np.isfinite(values))
    idx[ok] = np.random.default_rng([seed, 11]).permutation(ok)
    return idx


def shuffled(values: np.ndarray, seed: int) -> np.ndarray:
    """The values of the measured (finite) configurations permuted among themselves."""
    return values[shuffled_index(values, seed)]


def make(variant: str, space: Any, seed: int, trials: int, extra: dict[str, Any],
         recipes: bool = False) -> Any:
    preset, settings = {**VARIANTS, **extra}[variant]
    settings = dict(settings)
    if settings.get("n_startup_trials", 0) is None:
        settings["n_startup_trials"] = trials
    if preset == "pbt":  # enough rounds to spend the whole budget
        pop = make_controller("pbt", space, 0).settings["population_size"]
        settings["rounds"] = math.ceil(trials / pop)
    return make_controller(preset, space, seed, recipes=recipes, **settings)


def replay(table: Table, controller: Any, seed: int, trials: int, noise: Noise,
           perm: np.ndarray | None = None, draw: bool = False) -> tuple[np.ndarray, float]:
    """True value of the best-observed configuration after 1..trials trials (NaN before
    the first success), and the mean Hamming distance of proposals to their rows.
    `perm`: configuration i plays configuration perm[i] (the shuffled control passes a
    permutation; default the identity). An evaluation draws one of the configuration's
    measured rows when `draw` and it has two or more (a repeats table), else its value
    plus Gaussian noise of its band; draws come from a generator seeded by `seed`."""
    perm = np.arange(len(table)) if perm is None else perm
    values = table.rewards[perm]
    rng = np.random.default_rng([seed, 7])
    rows: dict[int, int] = {}
    distances: list[int] = []

    def evaluate(number: int, proposal: Proposal) -> tuple[float | None, Cost]:
        row, d = table.lookup(dict(proposal.assignment))
        rows[number] = row
        distances.append(d)
        cost = Cost(trainable_params=0, base_params=1, params_ratio=float(table.params[row]),
                    base_flops_per_token=1.0, extra_flops_per_token=0.0,
                    flops_ratio=float(table.flops[row]), flops_ratio_merged=0.0)
        measured = table.measured[perm[row]]
        if draw and len(measured) >= 2:
            x = float(measured[int(rng.integers(len(measured)))])
            return (x if math.isfinite(x) else None), cost
        v = float(values[row])
        if not math.isfinite(v):
            return None, cost
        return v + noise.sd(v) * float(rng.standard_normal()), cost

    driver = Driver(evaluate, parallel=1)
    driver.run(controller, trials)
    driver.drain(controller)
    curve = np.full(trials, np.nan)
    best_seen, kept = -math.inf, math.nan
    for i, rec in enumerate(driver.records[:trials]):
        if rec.reward is not None and rec.reward > best_seen:
            best_seen, kept = rec.reward, float(values[rows[rec.number]])
        curve[i] = kept
    curve[len(driver.records):] = kept
    return curve, float(np.mean(distances)) if distances else 0.0


def run(table: Table, variants: Sequence[str], seeds: int, trials: int, noise: Noise,
        extra: dict[str, Any] | None = None, shuffle: bool = True, draw: bool = False,
        recipes: bool = False, first_seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per variant: curves (seeds x trials) on the real and (unless not `shuffle`) the
    shuffled table, for seeds first_seed .. first_seed + seeds - 1."""
    extra = extra or {}
    results = {}
    for name in variants:
        t0 = time.monotonic()
        real, shuf, dists = [], [], []
        for s in range(first_seed, first_seed + seeds):
            ctrl = make(name, table.space, s, trials, extra, recipes)
            c, d = replay(table, ctrl, s, trials, noise, draw=draw)
            real.append(c)
            dists.append(d)
            if shuffle:
                ctrl = make(name, table.space, s, trials, extra, recipes)
                shuf.append(replay(table, ctrl, s, trials, noise,
                                   shuffled_index(table.rewards, s), draw)[0])
        results[name] = {"real": np.vstack(real),
                         "shuffled": np.vstack(shuf) if shuf else None,
                         "distance": float(np.mean(dists)),
                         "seconds": time.monotonic() - t0}
        logger.info("%s: %d seeds in %.1fs", name, seeds,
                    results[name]["seconds"])
    return results


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean of a-b, its standard error, P(a > b) with ties counted half) over seeds."""
    d = a - b
    se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    return float(np.mean(d)), se, float(np.mean((d > 0) + 0.5 * (d == 0)))


def diff_at(results: dict[str, dict[str, Any]], a: str, b: str, t: int,
            table: str = "real") -> tuple[float, float, float]:
    if a not in results or b not in results or results[a][table] is None \
            or t > results[a][table].shape[1]:
        return math.nan, math.nan, math.nan
    return paired(results[a][table][:, t - 1], results[b][table][:, t - 1])


def summary_line(results: dict[str, dict[str, Any]], noise: Noise, seeds: int,
                 trials: int) -> str:
    """The headline; a run shorter than 100 (60) trials reports at its last trial.
    lstm_learns=yes when the LSTM beats its untrained control by at least 2 standard
    errors (paired by seed)."""
    a, b = min(100, trials), min(60, trials)
    u = diff_at(results, "lstm", "lstm-lr0", a)
    r = diff_at(results, "lstm", "random", a)
    p = diff_at(results, "lstm", "tpe", a)
    t = diff_at(results, "tpe", "tpe-startup", b)
    learns = "yes" if u[0] > 0 and u[0] >= 2 * u[1] else "no"  # NaN (missing) says no
    return (f"lstm_minus_untrained_at{a}={u[0]:.4f} lstm_minus_random_at{a}={r[0]:.4f} "
            f"lstm_minus_tpe_at{a}={p[0]:.4f} tpe_minus_random_startup_at{b}={t[0]:.4f} "
            f"noise_sd={noise.overall:.4f} seeds={seeds} se_untrained={u[1]:.4f} "
            f"se_random={r[1]:.4f} se_lstm_tpe={p[1]:.4f} se_tpe={t[1]:.4f} "
            f"lstm_learns={learns}")


# the comparisons the headline block prints: (a, b) = "a minus b"
HEADLINE = (("lstm", "lstm-lr0"), ("lstm-direct", "lstm-lr0"), ("lstm", "lstm-direct"),
            ("lstm", "random"), ("lstm", "tpe"), ("lstm-lr0", "random"), ("tpe", "random"),
            ("tpe", "tpe-startup"))


def report(results: dict[str, dict[str, Any]], trials: int) -> list[str]:
    cps = [t for t in CHECKPOINTS if t <= trials]
    ats = [t for t in COMPARE_AT if t <= trials] or [trials]
    lines = ["true value of the best-observed configuration: median [q25, q75] over seeds",
             f"{'controller':<14}" + "".join(f"{'@' + str(t):>22}" for t in cps)
             + f"{'mean dist':>10}{'sec':>7}"]
    for name, r in results.items():
        cells = []
        for t in cps:
            col = r["real"][:, t - 1]
            q25, q50, q75 = np.nanpercentile(col, [25, 50, 75])
            cells.append(f"{q50:.4f} [{q25:.3f},{q75:.3f}]")
        lines.append(f"{name:<14}" + "".join(f"{c:>22}" for c in cells)
                     + f"{r['distance']:>10.2f}{r['seconds']:>7.1f}")
    lines.append("the same: mean ± standard error over seeds   real table | shuffled table")
    for name, r in results.items():
        cells = []
        for tab in ("real", "shuffled"):
            for t in ats:
                if r[tab] is None:
                    cells.append(f"@{t} -")
                    continue
                col = r[tab][:, t - 1]
                se = np.nanstd(col, ddof=1) / math.sqrt(len(col)) if len(col) > 1 \
                    else math.nan
                cells.append(f"@{t} {np.nanmean(col):.4f}±{se:.4f}")
        lines.append(f"{name:<14}" + "  ".join(cells[:len(ats)]) + " | "
                     + "  ".join(cells[len(ats):]))
    lines.append("headline, paired by seed: a minus b, mean ± se (P(a beats b)), "
                 "'*' where |mean| >= 2 se   real table | shuffled table")
    for x, y in HEADLINE:
        if x not in results or y not in results:
            continue
        cells = []
        for tab in ("real", "shuffled"):
            for t in ats:
                m, se, p = diff_at(results, x, y, t, tab)
                star = "*" if m != 0 and abs(m) >= 2 * se else " "
                cells.append(f"@{t} {m:+.4f}±{se:.4f}{star}({p:.2f})")
        lines.append(f"{x + ' - ' + y:<24}" + "  ".join(cells[:len(ats)]) + " | "
                     + "  ".join(cells[len(ats):]))
    for against in ("random", "lstm-lr0"):
        if against not in results:
            continue
        lines.append(f"minus {against}, paired by seed: mean ± se (P(beats {against}))"
                     "   real table | shuffled table")
        for name in results:
            if name == against:
                continue
            cells = []
            for tab in ("real", "shuffled"):
                for t in ats:
                    m, se, p = diff_at(results, name, against, t, tab)
                    cells.append(f"@{t} {m:+.4f}±{se:.4f} ({p:.2f})")
            half = len(ats)
            lines.append(f"{name:<14}" + "  ".join(cells[:half]) + " | "
                         + "  ".join(cells[half:]))
    return lines


def plot(results: dict[str, dict[str, Any]], table: Table, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in results.items():
        x = np.arange(1, r["real"].shape[1] + 1)
        ax.plot(x, np.nanmedian(r["real"], axis=0), label=name)
        ax.fill_between(x, np.nanpercentile(r["real"], 25, axis=0),
                        np.nanpercentile(r["real"], 75, axis=0), alpha=0.15)
    ax.axhline(table.best, color="k", ls="--", lw=0.8, label="best in table")
    ax.set_xlabel("trials")
    ax.set_ylabel("true value of best-observed config (median, IQR)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_extra(specs: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """--variant NAME=PRESET:key=value,key=value (values read as JSON when they parse)."""
    out = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        preset, _, kvs = rest.partition(":")
        if not name or not preset:
            raise SystemExit(f"--variant {spec!r}: use NAME=PRESET[:key=value,...]")
        settings = {}
        for kv in filter(None, kvs.split(",")):
            k, _, v = kv.partition("=")
            try:
                settings[k] = json.loads(v)
            except json.JSONDecodeError:
                settings[k] = v
        out[name] = (preset, settings)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="ignore --table; replay on N made-up rows (autopeft.testing.fakes)")
    ap.add_argument("--space", default=None,
                    help="the space the table was measured on (default: the copy beside the "
                         "table, <table>_space.yaml; default.yaml for --synthetic)")
    ap.add_argument("--num-layers", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds are first-seed .. first-seed + seeds - 1 (a fresh range "
                         "replicates a result on seeds no setting was chosen on)")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--controllers", default=",".join(VARIANTS),
                    help="variants to run (names of VARIANTS or of --variant)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=PRESET:k=v,..",
                    help="an extra variant, e.g. lstm-b4=lstm:batch_size=4")
    ap.add_argument("--noise-sd", type=float, default=None,
                    help="one noise sd for every configuration (default: estimated)")
    ap.add_argument("--no-shuffled", action="store_true",
                    help="skip the shuffled-table control (half the time; dev runs only)")
    ap.add_argument("--noise", choices=("auto", "draw", "gaussian"), default="auto",
                    help="draw: an evaluation is one of the configuration's measured "
                         "repeats; gaussian: its mean plus the band's noise; auto: draw "
                         "when the table has repeats (make_table.py --collect)")
    ap.add_argument("--recipes", action="store_true",
                    help="begin every replay with the standard recipes the space can "
                         "express, told to the controller (as a default study does)")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "bench_controllers")
    args = ap.parse_args(argv)

    if not args.synthetic and not args.table.is_file():
        print(f"no table at {args.table}; produce it with real trials first, or pass "
              f"--synthetic N to check the harness", file=sys.stderr)
        return 2
    space_path = args.space or ("default.yaml" if args.synthetic else
                                str(args.table.with_name(args.table.stem + "_space.yaml")))
    if args.space is None and not args.synthetic and not Path(space_path).is_file():
        print(f"no space file beside the table ({space_path}): pass --space with the space "
              f"the table was measured on", file=sys.stderr)
        return 2
    space = load_space(space_path).bind(num_layers=args.num_layers)
    if args.synthetic:
        rows = synthetic_table(space, args.synthetic, seed=0)
        write_csv(args.out / "synthetic_table.csv", rows)
    else:
        rows = read_csv(args.table)
    table = Table(space, rows)
    # a synthetic table has one row per configuration: no noise to estimate from it
    noise = estimate_noise(table, 0.03 if table.synthetic and args.noise_sd is None
                           else args.noise_sd)
    extra = parse_extra(args.variant)
    variants = [c for c in args.controllers.split(",") if c]
    unknown = [v for v in variants if v not in VARIANTS and v not in extra]
    if unknown:
        print(f"unknown controller variant(s) {unknown}: use {sorted(VARIANTS)} or define "
              f"one with --variant NAME=PRESET:key=value", file=sys.stderr)
        return 2
    draw = args.noise == "draw" or (args.noise == "auto" and table.repeats)
    repeated = sum(len(m) >= 2 for m in table.measured)
    results = run(table, variants, args.seeds, args.trials, noise, extra,
                  shuffle=not args.no_shuffled, draw=draw, recipes=args.recipes,
                  first_seed=args.first_seed)

    label = "SYNTHETIC table (autopeft.testing.fakes) - not a result" if table.synthetic \
        else f"table {args.table.name}"
    print(f"# {label}: {len(rows)} rows, {len(table)} measured configurations, best value "
          f"{table.best:.4f}; space {space.name}; {args.seeds} seeds (from "
          f"{args.first_seed}); {args.trials} trials")
    print(f"# noise sd by configuration value: {noise.describe()}")
    print("# replayed evaluation: " + (
        f"one of the configuration's measured rows, drawn ({repeated} configurations have "
        f"2 or more; the others: mean + Gaussian noise of the band)" if draw else
        "configuration mean + Gaussian noise of its band")
        + ("; standard recipes first" if args.recipes else ""))
    for name in variants:
        print(f"# {name}: {({**VARIANTS, **extra})[name]}")
    print("\n".join(report(results, args.trials)))
    png = args.out / ("bench_controllers_synthetic.png" if table.synthetic
                      else "bench_controllers.png")
    plot(results, table, png, f"{label}, noise replayed\n{space.name}, {args.seeds} seeds")
    print(f"# plot: {png}")
    curves = args.out / "curves.npz"  # per seed, per trial: for any further analysis
    np.savez_compressed(curves, **{f"{n}__{tab}": r[tab] for n, r in results.items()
                                   for tab in ("real", "shuffled") if r[tab] is not None})
    print(f"# curves (seeds x trials per controller and table): {curves}")
    print(summary_line(results, noise, args.seeds, args.trials))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("autopeft").setLevel(logging.WARNING)  # not every recipe of every replay
    raise SystemExit(main())
