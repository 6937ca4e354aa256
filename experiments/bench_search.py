"""Does the default search pay for itself? (issue 11, item 6)

On each dataset, as a user would run it:

1. **The budget unit.** One default proxy trial of LoRA r=8 on q,v (the first standard
   recipe, the trial a user would run instead of searching) is trained and its CPU
   seconds measured (`probe`). The search gets `--budget-trials` (12) times that.
2. **The search.** The default search (autopeft.study: space `default.yaml`, the default
   controller preset `tpe_asha`, standard recipes first) runs until its trials' CPU
   seconds pass the budget (resume_study(cpu_budget_s=...): CPU time, not wall time, so a
   busy shared machine does not shrink it). Then finalize: the top-3 trials by proxy
   reward are retrained with the experiment's `full` schedule and the winner is chosen on
   full-training *validation* reward (autopeft.finalize); its test score is reported.
3. **The baselines, at the same full schedule.** Every standard recipe that the default
   space expresses (autopeft.recipes: LoRA r=8 q,v, Pfeiffer, Houlsby and parallel
   adapters, IA3, BitFit, prefix tuning), each at its own learning rate, and full
   fine-tuning (module type `full`, every weight trains, learning rate 1e-4, measured: autopeft.recipes.FULL_FT_LR).

Same seed, same training: a recipe is trained with the seed finalize gives that recipe's
trial in the study (trial_seed(seed, its trial number)), through autopeft.calibrate's
records, which finalize reuses. So a search whose winner *is* a recipe reproduces that
recipe's row exactly: its test accuracy ties and its reward does not exceed, and it does
not count as beating the recipes. That is the control against a false win.

Scores: test accuracy on the held-out test split (never seen by the search or by
finalize's choice) and the test reward R = test accuracy - lambda*(params_ratio +
flops_ratio) (the experiment's reward weights; what `autopeft calibrate` ranks on).
Per dataset (means over --seeds): the best recipe's test accuracy and, separately, the
best test reward over the recipes; the search *beats the recipes* when the winner's test
accuracy is at least the best recipe test accuracy AND its test reward is higher than
every recipe's. Spread: the standard error of a test accuracy, sqrt(p(1-p)/n_test), and
with --seeds > 1 the standard deviation over seeds.

    .venv/bin/python experiments/bench_search.py                 # the benchmark (hours)
    .venv/bin/python experiments/bench_search.py --smoke         # the machinery (minutes)
    .venv/bin/python experiments/bench_search.py --experiments default,my_task.yaml --seeds 2

Every measured row (dataset, side, seed, test accuracy, reward, params/FLOPs ratios, CPU
seconds) is written to --results as soon as it is measured; a rerun skips the rows there
and resumes the studies in --workdir (a search killed mid-way continues where it
stopped). The last line:

    search_beats_recipes=<k>/<n> mean_test_gain=<points> vs_full_ft=<points> budget_trials=<b>

mean_test_gain: mean over datasets of (winner - best recipe) test accuracy, in points;
vs_full_ft: mean of (winner - full fine-tuning) test accuracy, in points.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

SPACE = "default.yaml"
CONTROLLER = "tpe_asha"            # autopeft.cli.search_cmd.DEFAULT_CONTROLLER (checked)
# the benchmark's datasets: four kinds of text and label, on which the recipes differ
# (topic; 3-class tweet, editorial sentiment; binary critic polarity). Recipes' proxy
# validation accuracy: 0.56-0.80 tweets, 0.55-0.68 NYT, 0.58-0.77 Rotten Tomatoes
# (experiments/results/bench_search_recipe_spread.txt); TREC-6 in autopeft/recipes.py
EXPERIMENTS = ("default", "vader_tweets", "vader_nyt", "rotten_tomatoes")
FULL_FT_LR = 1e-4                  # autopeft.recipes.FULL_FT_LR: measured on TREC-6, 3 epochs
N_TRIALS_CAP = 10                  # the study's trial budget: this many x budget_trials
RESULTS = Path(__file__).resolve().parent / "results" / "bench_search.json"

log = logging.getLogger("bench_search")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- settings -----------------------------------------------------------------------------
def smoke_config(cfg: dict) -> dict:
    """Tiny sizes: proves the machinery, not the figures (everything near chance)."""
    cfg = json.loads(json.dumps(cfg))
    cfg["data"].update(max_examples=500)
    cfg["proxy"].update(train_examples=160, max_steps=8, eval_every=4,
                        validation_examples=50, rung_examples=None)
    cfg["full"].update(train_examples=None, max_steps=12, epochs=None, eval_every=6,
                       patience=0, validation_examples=None)
    return cfg


def load_config(ref: str, *, seed: int, smoke: bool) -> Any:
    from autopeft.config import ExperimentConfig, load_experiment

    cfg = load_experiment(ref)
    d = cfg.to_dict()
    d["seed"] = seed
    if smoke:
        d = smoke_config(d)
    return dataclasses.replace(ExperimentConfig.from_dict(d), source=cfg.source)


def label_of(ref: str) -> str:
    return Path(ref).stem if ref.endswith((".yaml", ".yml")) else ref


# -- the results file ---------------------------------------------------------------------
class Results:
    """Rows keyed by (dataset, side, seed), saved after every row (atomic replace)."""

    def __init__(self, path: Path, settings: Mapping[str, Any]) -> None:
        self.path = path
        self.settings = dict(settings)
        self.rows: list[dict] = []
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("settings") != self.settings:
                raise SystemExit(
                    f"{path} holds results of other settings ({data.get('settings')});\n"
                    f"  fix: pass another --results file, or delete this one to start over")
            self.rows = list(data["rows"])

    def get(self, dataset: str, side: str, seed: int) -> dict | None:
        return next((r for r in self.rows if (r["dataset"], r["side"], r["seed"])
                     == (dataset, side, seed)), None)

    def add(self, row: dict) -> dict:
        self.rows = [r for r in self.rows if (r["dataset"], r["side"], r["seed"]) !=
                     (row["dataset"], row["side"], row["seed"])] + [row]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "rows": self.rows}, indent=1))
        os.replace(tmp, self.path)
        return row


def scored_row(dataset: str, side: str, seed: int, m: Any, cfg: Any, **extra: Any) -> dict:
    """A full-schedule training's row: test accuracy and reward, validation, cost, CPU."""
    from autopeft.reward import score

    test = score(dataclasses.replace(m, metric=float(m.test_metric)), cfg)
    val = score(m, cfg)
    n_test = extra.pop("n_test", None)
    return {"dataset": dataset, "side": side, "seed": seed,
            "test_acc": float(m.test_metric), "test_reward": float(test.reward),
            "val_acc": float(m.metric), "val_reward": float(val.reward),
            "feasible": bool(val.feasible), "params_ratio": m.cost.params_ratio,
            "flops_ratio": m.cost.flops_ratio, "trainable_params": m.cost.trainable_params,
            "cpu_seconds": (m.extra or {}).get("cpu_seconds"), "steps": m.steps,
            "n_test": n_test, **extra}


def failed_row(dataset: str, side: str, seed: int, error: str | None, **extra: Any) -> dict:
    """A training that failed (NaN loss, out of memory): kept, left out of the maxima."""
    return {"dataset": dataset, "side": side, "seed": seed, "test_acc": None,
            "test_reward": None, "error": (error or "")[:500], **extra}


# -- one dataset, one seed ----------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """One (dataset, seed): its settings, the study's name and the shared evaluator."""

    res: Results
    storage: Any
    args: argparse.Namespace
    label: str
    seed: int
    cfg: Any                       # ExperimentConfig at proxy fidelity, seed = `seed`
    bound: Any                     # the default space bound to the model
    expressed: list                # the standard recipes it expresses (full FT apart)
    evaluator: Any = None          # one ProxyEvaluator: the model and data load once

    @property
    def name(self) -> str:
        return f"{self.label}-s{self.seed}"

    @property
    def full_cfg(self) -> Any:
        return self.cfg.for_final()

    def row(self, side: str) -> dict | None:
        return self.res.get(self.label, side, self.seed)

    def sides(self) -> list[str]:
        return ["probe", "search", "winner", "full_ft"] + \
            [f"recipe:{e.name}" for e in self.expressed]

    def train(self, number: int, candidate: dict, cfg: Any, seed: int) -> Any:
        from autopeft.evaluation.base import NullReporter
        from autopeft.records import EvalRequest

        return self.evaluator.evaluate(EvalRequest(self.name, number, candidate,
                                                   cfg.to_dict(), seed=seed), NullReporter())

    def n_test(self) -> int:
        return int(len(self.evaluator.setup(self.cfg).splits["test"]))


def run_one(res: Results, ref: str, seed: int, args: argparse.Namespace,
            storage: Any) -> None:
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.models import model_info
    from autopeft.recipes import express
    from autopeft.space import load_space

    cfg = load_config(ref, seed=seed, smoke=args.smoke)
    info = model_info(cfg.model)
    bound = load_space(SPACE).bind(num_layers=info.num_layers, hidden_size=info.hidden_size)
    run = Run(res, storage, args, label_of(ref), seed, cfg, bound,
              [e for e in express(bound)[0] if e.recipe.type != "full"])
    if all(run.row(side) for side in run.sides()):
        return  # measured in an earlier run
    run.evaluator = ProxyEvaluator(cfg.to_dict())
    try:
        probe = run.row("probe") or measure_probe(run)
        if run.row("search") is None:
            search(run, args.budget_trials * probe["cpu_seconds"], probe)
        records = full_trainings(run)
        if run.row("winner") is None:
            winner(run, records)
        recipes(run, records)
        if run.row("full_ft") is None:
            full_finetuning(run)
    finally:
        run.evaluator.close()


def measure_probe(run: Run) -> dict:
    """The budget unit: one default proxy trial of LoRA r=8 on q,v (trial 0's seed)."""
    from autopeft.study import trial_seed

    lora = next(e for e in run.expressed if e.name == "lora_r8_qv")
    say(f"{run.name}: probe (one default proxy trial of LoRA r=8 q,v)")
    run.evaluator.setup(run.cfg)  # set-up is not the trial's: measured apart
    m = run.train(0, run.bound.to_candidate(lora.assignment).to_dict(), run.cfg,
                  trial_seed(run.seed, 0))
    return run.res.add({"dataset": run.label, "side": "probe", "seed": run.seed,
                        "cpu_seconds": m.extra["cpu_seconds"], "val_acc": m.metric,
                        "train_seconds": m.train_seconds, "steps": m.steps})


def search(run: Run, budget: float, probe: dict) -> dict:
    """The default search, stopped by its trials' CPU seconds; resumed when it exists."""
    from autopeft.exceptions import StudyNotFoundError
    from autopeft.study import create_study, executor_factory, resume_study
    from autopeft.study.runner import trial_cpu_seconds

    try:
        run.storage.get_study(run.name)
        say(f"{run.name}: resuming the search")
    except StudyNotFoundError:
        create_study(run.storage, run.name, space=SPACE, experiment=run.cfg,
                     controller=CONTROLLER, seed=run.seed,
                     n_trials=N_TRIALS_CAP * run.args.budget_trials,
                     runs_dir=run.args.workdir / "runs", recipes=True)
        say(f"{run.name}: search, CPU budget {budget:.0f} s "
            f"({run.args.budget_trials} x {probe['cpu_seconds']:.1f} s)")
    resume_study(run.storage, run.name,
                 executor_factory=executor_factory(evaluator=run.evaluator),
                 cpu_budget_s=budget).run()
    trials = run.storage.get_trials(run.name)
    first = next((t for t in trials if t.number == 0 and t.metrics), None)
    return run.res.add({
        "dataset": run.label, "side": "search", "seed": run.seed, "budget_cpu": budget,
        "cpu_seconds": sum(trial_cpu_seconds(t.metrics) or 0.0 for t in trials if t.metrics),
        "trials": len(trials), "complete": sum(t.state.value == "complete" for t in trials),
        "pruned": sum(t.state.value == "pruned" for t in trials),
        "recipes_run": sum(bool(t.meta.get("recipe")) for t in trials),
        # the control of the budget's unit: the study's own LoRA r=8 q,v trial
        "trial0_cpu_seconds": None if first is None else trial_cpu_seconds(first.metrics)})


def recipe_trials(run: Run) -> dict:
    """The study's recipe trials by recipe name."""
    names = {e.name for e in run.expressed}
    return {t.meta["recipe"]: t for t in run.storage.get_trials(run.name)
            if t.meta.get("recipe") in names}


def full_trainings(run: Run) -> dict:
    """Finalize's top-k and every recipe trial at the full schedule, as calibrate records
    (each stored as it ends; finalize reuses them). Returns the records by trial."""
    from autopeft.calibrate import load_records, train_trials
    from autopeft.exceptions import StudyNotFoundError
    from autopeft.finalize import rank_trials

    try:
        run.storage.get_study(run.name)
    except StudyNotFoundError:
        raise SystemExit(
            f"{run.res.path} says the search of {run.name} ran, but {run.args.workdir} has "
            f"no study {run.name!r} (another --workdir?)\n  fix: pass the --workdir of that "
            f"run, or delete the rows of dataset {run.label!r}, seed {run.seed} from "
            f"{run.res.path} to measure it again") from None
    by_recipe = recipe_trials(run)
    _, ranked = rank_trials(run.storage, run.name)  # finalize's own choice of the top-k
    top = [t for t, _, feasible, _ in ranked if feasible][: run.args.top_k]
    # a recipe whose row is stored (an earlier run, e.g. before the search was redone
    # with the same seed: recipes are always its first trials) is not trained again
    todo = top + [t for name, t in by_recipe.items()
                  if t.number not in {x.number for x in top}
                  and run.row(f"recipe:{name}") is None]
    if run.row("winner") is None or any(run.row(f"recipe:{r}") is None for r in by_recipe):
        say(f"{run.name}: full-schedule training of trials {[t.number for t in todo]} "
            f"(top {run.args.top_k} and the recipes)")
        train_trials(run.storage, run.name, todo, evaluator=run.evaluator, log=say)
    return load_records(run.storage, run.name)


def winner(run: Run, records: dict) -> dict:
    """finalize (every finalist is a record already: it trains nothing) and its winner."""
    from autopeft.candidate import Candidate
    from autopeft.finalize import finalize_study
    from autopeft.records import Metrics

    done = run.storage.get_study_attrs(run.name).get("finalize")
    if done is None:
        out = run.args.workdir / "export" / run.name
        if out.exists():
            shutil.rmtree(out)  # our own export of an interrupted finalize
        done = finalize_study(run.storage, run.name, top_k=run.args.top_k, out_dir=str(out),
                              log=say)
    win = next(r for r in done["candidates"] if r["trial"] == done["winner"])
    trial = run.storage.get_trial(run.name, done["winner"])
    finalists = [r["trial"] for r in done["candidates"]]
    cpu = sum((records[t].metrics.extra or {}).get("cpu_seconds") or 0.0
              for t in finalists if t in records and records[t].metrics)
    return run.res.add(scored_row(
        run.label, "winner", run.seed, Metrics.from_dict(win["metrics"]), run.full_cfg,
        n_test=run.n_test(), trial=done["winner"], finalists=finalists,
        recipe=trial.meta.get("recipe"), candidate=Candidate.from_dict(trial.candidate)
        .summary(), finalize_cpu_seconds=cpu))


def recipes(run: Run, records: dict) -> None:
    """Each recipe at the full schedule: its study trial's record, or (a recipe the
    search's budget did not reach) trained here with the seed its trial would have had."""
    from autopeft.exceptions import TrialFailedError
    from autopeft.study import trial_seed

    by_recipe = recipe_trials(run)
    for i, rec in enumerate(run.expressed):
        side = f"recipe:{rec.name}"
        if run.row(side):
            continue
        t = by_recipe.get(rec.name)
        r = records.get(t.number) if t is not None else None
        if r is not None and r.status == "failed":  # the candidate itself failed
            run.res.add(failed_row(run.label, side, run.seed, r.error, trial=t.number))
            continue
        if r is not None and r.status == "complete":
            m, number, how = r.metrics, t.number, "study trial"
        else:
            number = t.number if t is not None else i   # recipes are trials 0, 1, ...
            say(f"{run.name}: recipe {rec.name} at the full schedule (not a trial)")
            try:
                m = run.train(number, run.bound.to_candidate(rec.assignment).to_dict(),
                              run.full_cfg, trial_seed(run.seed, number))
            except TrialFailedError as exc:
                run.res.add(failed_row(run.label, side, run.seed, str(exc), trial=number))
                continue
            how = "trained apart"
        run.res.add(scored_row(run.label, side, run.seed, m, run.full_cfg,
                               n_test=run.n_test(), trial=number, how=how))


def full_finetuning(run: Run) -> dict:
    """The reference: every weight trains (module type `full`), same full schedule."""
    from autopeft.study import trial_seed

    say(f"{run.name}: full fine-tuning at the full schedule")
    m = run.train(10**6, {"modules": [{"type": "full"}],
                          "hyper": {"learning_rate": FULL_FT_LR}},
                  run.full_cfg, trial_seed(run.seed, 0))
    return run.res.add(scored_row(run.label, "full_ft", run.seed, m, run.full_cfg,
                                  n_test=run.n_test(), learning_rate=FULL_FT_LR))


# -- the comparison (pure: tests feed it rows) ---------------------------------------------
def _mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def compare(rows: list[dict], datasets: list[str], seeds: list[int]) -> dict:
    """Per dataset and overall figures from the stored rows (means over the seeds that
    have every row a comparison needs)."""
    per = {}
    for d in datasets:
        mine = [r for r in rows if r["dataset"] == d and r["seed"] in seeds
                and r.get("test_acc") is not None]
        recipes = sorted({r["side"] for r in mine if r["side"].startswith("recipe:")})
        need = ["winner", "full_ft", *recipes]
        ok = [s for s in seeds if all(any(r["side"] == n and r["seed"] == s for r in mine)
                                      for n in need)]
        if not ok or not recipes:
            per[d] = None
            continue

        def side(n: str, key: str) -> float:
            return _mean(r[key] for r in mine if r["side"] == n and r["seed"] in ok)

        sides = {n: {k: side(n, k) for k in ("test_acc", "test_reward", "params_ratio",
                                              "flops_ratio")} for n in need}
        best_acc = max(recipes, key=lambda n: (sides[n]["test_acc"], sides[n]["test_reward"]))
        best_rew = max(recipes, key=lambda n: sides[n]["test_reward"])
        w = sides["winner"]
        n_test = next(r["n_test"] for r in mine if r["side"] == "winner")
        p = w["test_acc"]
        wins = [r for r in mine if r["side"] == "winner" and r["seed"] in ok]
        per[d] = {
            "sides": sides, "seeds": ok, "best_recipe": best_acc, "best_reward_recipe": best_rew,
            "beats": (w["test_acc"] >= sides[best_acc]["test_acc"]
                      and w["test_reward"] > sides[best_rew]["test_reward"]),
            "gain": 100 * (w["test_acc"] - sides[best_acc]["test_acc"]),
            "vs_full": 100 * (w["test_acc"] - sides["full_ft"]["test_acc"]),
            "params_ratio": w["params_ratio"],
            "se": 100 * math.sqrt(max(p * (1 - p), 0.0) / n_test) if n_test else None,
            "seed_sd": (100 * statistics.stdev(r["test_acc"] for r in wins)
                        if len(wins) > 1 else None),
            "winner_recipes": sorted({r["recipe"] for r in wins if r.get("recipe")}),
            "candidates": sorted({r["candidate"] for r in wins}),
        }
    done = [d for d in datasets if per.get(d)]
    return {
        "per": per, "n": len(datasets), "measured": done,
        "k": sum(per[d]["beats"] for d in done),
        "mean_gain": _mean(per[d]["gain"] for d in done) if done else float("nan"),
        "vs_full": _mean(per[d]["vs_full"] for d in done) if done else float("nan"),
        "small": sum(per[d]["params_ratio"] <= 0.01 for d in done),
        "close_and_small": sum(per[d]["params_ratio"] <= 0.01 and per[d]["vs_full"] >= -1.0
                               for d in done),
    }


def last_line(summary: dict, budget_trials: int) -> str:
    return (f"search_beats_recipes={summary['k']}/{summary['n']} "
            f"mean_test_gain={summary['mean_gain']:+.2f} "
            f"vs_full_ft={summary['vs_full']:+.2f} budget_trials={budget_trials}")


def report(res: Results, datasets: list[str], seeds: list[int], budget_trials: int) -> str:
    summary = compare(res.rows, datasets, seeds)
    for d in datasets:
        p = summary["per"].get(d)
        print(f"\n== {d} (seeds {seeds}) ==")
        for s in seeds:
            probe, search = res.get(d, "probe", s), res.get(d, "search", s)
            if probe and search:
                t0 = search.get("trial0_cpu_seconds")
                print(f"seed {s}: budget {search['budget_cpu']:.0f} CPU s = {budget_trials} x "
                      f"{probe['cpu_seconds']:.1f} s (the study's own LoRA r=8 q,v trial: "
                      f"{'-' if t0 is None else f'{t0:.1f}'} s); search used "
                      f"{search['cpu_seconds']:.0f} s in {search['trials']} trials "
                      f"({search['recipes_run']} recipes, {search['pruned']} pruned)")
        if p is None:
            print("(not every row is measured yet)")
            continue
        print(f"{'side':<26} {'test acc':>8} {'test R':>8} {'params %':>9} {'FLOPs %':>8}")
        for n, v in sorted(p["sides"].items(), key=lambda kv: -kv[1]["test_acc"]):
            mark = ""
            if n == p["best_recipe"]:
                mark += " <- best recipe (test acc)"
            if n == p["best_reward_recipe"]:
                mark += " <- best recipe (test R)"
            print(f"{n:<26} {v['test_acc']:8.4f} {v['test_reward']:8.4f} "
                  f"{100 * v['params_ratio']:9.3f} {100 * v['flops_ratio']:8.3f}{mark}")
        spread = f"test se +-{p['se']:.2f} points" if p["se"] is not None else ""
        if p["seed_sd"] is not None:
            spread += f", winner sd over seeds {p['seed_sd']:.2f} points"
        recipe = ", ".join(p["winner_recipes"])
        print(f"winner: {'; '.join(p['candidates'])}"
              f"{f' (a recipe: {recipe})' if recipe else ''}")
        print(f"beats the recipes: {'yes' if p['beats'] else 'no'}; gain over the best recipe "
              f"{p['gain']:+.2f} points; vs full fine-tuning {p['vs_full']:+.2f} points "
              f"at {100 * p['params_ratio']:.3f} % of its parameters; {spread}")
    n = summary["n"]
    print(f"\nmeasured datasets: {len(summary['measured'])}/{n}; winner at <= 1 % of full "
          f"fine-tuning's trainable parameters: {summary['small']}/{n}; within 1 point of "
          f"full fine-tuning at <= 1 %: {summary['close_and_small']}/{n}")
    line = last_line(summary, budget_trials)
    print(line)
    return line


# -- main ---------------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", default=",".join(EXPERIMENTS),
                    help="comma-separated experiment names or files (default: %(default)s)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default 1)")
    ap.add_argument("--budget-trials", type=int, default=12,
                    help="the search's CPU budget in default proxy trials (default 12)")
    ap.add_argument("--top-k", type=int, default=3, help="finalize's top-k (default 3)")
    ap.add_argument("--results", type=Path, default=None,
                    help=f"results file (default {RESULTS}; --smoke: in --workdir)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/autopeft_bench_search"),
                    help="the studies' database and checkpoints (default %(default)s)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, first dataset only: proves the machinery in minutes")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    for k in ("seeds", "budget_trials", "top_k", "threads"):
        if getattr(args, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be at least 1")
    args.experiments = [e for e in args.experiments.split(",") if e]
    if args.smoke:
        args.experiments = args.experiments[:1]
        args.workdir = args.workdir / "smoke" if args.workdir.name != "smoke" else args.workdir
    if args.results is None:
        args.results = args.workdir / "bench_search.json" if args.smoke else RESULTS
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import torch

    from autopeft.cli.search_cmd import DEFAULT_CONTROLLER
    from autopeft.storage import open_storage

    if DEFAULT_CONTROLLER != CONTROLLER:
        say(f"note: the CLI's default controller is now {DEFAULT_CONTROLLER}; "
            f"this benchmark runs {CONTROLLER}")
    torch.set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    labels = [label_of(e) for e in args.experiments]
    res = Results(args.results, {"smoke": args.smoke, "budget_trials": args.budget_trials,
                                 "top_k": args.top_k, "space": SPACE,
                                 "controller": CONTROLLER})
    storage = open_storage(f"sqlite:///{args.workdir / 'bench_search.db'}")
    seeds = list(range(args.seeds))
    try:
        for ref in args.experiments:
            for seed in seeds:
                run_one(res, ref, seed, args, storage)
    finally:
        storage.close()
    return report(res, labels, seeds, args.budget_trials)


if __name__ == "__main__":
    main()
