"""Population based training, judged in a real run with weight inheritance (issue 11).

The controller replay (bench_controllers.py) cannot judge PBT: its table holds scores,
not weights, so a replayed PBT member never inherits anything. Here every arm is a real
study on the real model (default: MiniLM-L6 on TREC-6, `experiments/default.yaml`, space
`default.yaml`) with real training, under the same CPU budget:

1. **The budget unit.** One default proxy trial of LoRA r=8 on q,v is trained and its
   CPU seconds measured (bench_search.py's probe, reused). Each arm gets
   `--budget-trials` (12) times that, as resume_study(cpu_budget_s=...): CPU seconds of
   the study's trials, not wall time, so a busy shared machine does not shrink an arm.
2. **The arms**, standard recipes OFF for every arm (this compares controllers, not the
   recipe warm start), same study seed:
   - `pbt_inherit`: the shipped `pbt` preset with population 4 (`--population`): a
     PBT trial costs about one proxy trial, so 12 trials' budget is ~3 rounds of 4
     (two exploit steps); the shipped 8 would not finish 2 rounds. With 4 and the
     shipped quantile 0.25, each round one member exploits, one is copied and two just
     continue; 3 would give 4 rounds with a single continuing member, 2 none. Its
     `rounds` is set high enough that the CPU budget, not the round count, ends it.
     Each round a member trains another proxy schedule (150 steps) from its own or its
     parent's checkpoint: weights are inherited.
   - `pbt_no_inherit`: the same preset with `inherit_weights: false`: same rounds,
     exploit and explore, but no weights travel (an exploiting member copies only the
     config, and every trial trains from fresh weights). The control that would expose
     a false win of inheritance; it is what the replay measured.
   - `tpe_asha`: the default controller (TPE + ASHA).
   - `random`: uniform sampling, the baseline.
3. **The scores**, per arm and seed, of the best trial by proxy reward (autopeft.ranking's
   rule, as finalize ranks: feasible first):
   (a) `full`: its configuration retrained from scratch with the experiment's `full`
       schedule (what `autopeft finalize --top-k 1` does: same seed trial_seed(seed,
       trial), same schedule) and scored on the TEST split;
   (b) `member`: the trial's own checkpoint (for PBT with inheritance: the trained
       member, PBT's real product, its weights the fruit of every round of its chain)
       scored on the TEST split directly, no training. Done for every arm, so the
       members can be compared too (for the other arms it is one 150-step trial). As a
       control of the loading, the checkpoint is also re-scored on the proxy's validation
       subset, which must give back the trial's own validation accuracy (`member_val`).
   Both are reported as test accuracy and test reward (accuracy - lambda*(params_ratio +
   flops_ratio)), with the proxy reward, the search's CPU seconds and its trial count.
   Spread: mean +- sd over `--seeds` (default 2), paired differences to pbt_inherit,
   and the binomial standard error of one test accuracy.

    .venv/bin/python experiments/bench_pbt.py --threads 1          # the benchmark
    .venv/bin/python experiments/bench_pbt.py --smoke --threads 1  # the machinery only
    .venv/bin/python experiments/bench_pbt.py --seeds 3            # one more seed: resumes

Every (arm, seed) row is written to --results (default experiments/results/bench_pbt.json)
as soon as it is measured (once after the search, again when scored); a rerun skips what
is there and resumes the studies in --workdir (an arm killed mid-search continues where it
stopped). A results file of other settings is refused. The last line uses score (a), one
procedure for every arm (score (b) is the line before it, `member:`):

    pbt_inherit=<mean test acc> pbt_no_inherit=<..> tpe_asha=<..> random=<..> seeds=<n> budget_trials=<b>

What to keep in mind when reading it:
- A trial's CPU seconds include its cost measurement, and the cost meter times each
  architecture once (autopeft.cost.CostMeter); PBT re-trains the same architectures
  round after round, so its trials are a little cheaper and both PBT arms fit a few more
  trials into the same budget than tpe_asha and random. That is what the product does,
  and it is the same for both PBT arms; `trials` in the table shows it.
- Each PBT round restarts the proxy's learning-rate schedule (warmup, linear decay) from
  the inherited weights; the steps a member's weights trained in all are `trained_steps`
  (the sum over its warm-start chain).
- Score (a) of a PBT arm retrains only the final config of the best member, from
  scratch: it judges PBT as a config search; score (b) judges the trained member.

Cost (an estimate from trial counts and the smoke run, not a measurement of the full
run): per seed, the probe plus 4 arms x 12 proxy trials' CPU = 49 proxy trials (a default
proxy trial: 17.9 s in the README; bench_search's probe used 16.5 CPU s on VADER tweets at load 3),
~14 min; and 4 full-schedule trainings (3 epochs of TREC-6's train split, 810 steps = 5.4
proxy trials' training, less when early stopping ends one), ~90 s each, ~6 min; plus 5
model loads. About 20 minutes of CPU per seed, 40 minutes for the default 2 seeds. The
smoke run got 0.95 CPU s per wall second at load 3 on this 2-core machine, so about 45
minutes of wall time there, up to 1.5 hours if the machine gets busier. --smoke (1 seed,
8-step trials, 500 examples: 1.5 minutes at load 3) proves the machinery only: its trials
stay near chance.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_search as bs  # noqa: E402 - the probe, the config loader, the results file

SPACE = bs.SPACE
ARMS = ("pbt_inherit", "pbt_no_inherit", "tpe_asha", "random")
N_TRIALS_CAP = 10                  # the study's trial budget: this many x budget_trials
RESULTS = Path(__file__).resolve().parent / "results" / "bench_pbt.json"
say = bs.say


# -- the arms -----------------------------------------------------------------------------
def arm_preset(arm: str, population: int, n_trials: int) -> Any:
    """The controller preset of an arm (a Preset: stored with the study as it is)."""
    from autopeft.controllers import load_preset

    if arm in ("tpe_asha", "random"):
        return load_preset(arm)
    shipped = load_preset("pbt")
    settings = {**shipped.settings, "population_size": population,
                "rounds": math.ceil(n_trials / population),  # the CPU budget ends it
                "inherit_weights": arm == "pbt_inherit"}
    return dataclasses.replace(shipped, name=arm, settings=settings,
                               description=f"{arm}: shipped pbt, population {population}")


def preset_summary(arm: str, population: int, n_trials: int) -> dict:
    p = arm_preset(arm, population, n_trials)
    return {"controller": p.controller, "settings": dict(p.settings), "pruner": p.pruner}


# -- one seed -----------------------------------------------------------------------------
def study_name(label: str, arm: str, seed: int) -> str:
    return f"{label}-{arm}-s{seed}"


def run_seed(res: bs.Results, ref: str, seed: int, args: argparse.Namespace,
             storage: Any) -> None:
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.models import model_info
    from autopeft.recipes import express
    from autopeft.space import load_space

    label = bs.label_of(ref)
    rows = [res.get(label, arm, seed) for arm in ARMS]
    if all(r is not None and r.get("stage") == "done" for r in rows):
        return  # measured in an earlier run
    cfg = bs.load_config(ref, seed=seed, smoke=args.smoke)
    info = model_info(cfg.model)
    bound = load_space(SPACE).bind(num_layers=info.num_layers, hidden_size=info.hidden_size)
    run = bs.Run(res, storage, args, label, seed, cfg, bound,
                 [e for e in express(bound)[0] if e.recipe.type != "full"])
    run.evaluator = ProxyEvaluator(cfg.to_dict())  # the probe, every arm and the scoring
    try:
        probe = run.row("probe") or bs.measure_probe(run)
        budget = args.budget_trials * probe["cpu_seconds"]
        for arm in ARMS:
            row = run.row(arm)
            if row is None:
                row = search(run, arm, budget, probe)
            if row.get("stage") != "done":
                score_arm(run, arm, row)
    finally:
        run.evaluator.close()


def search(run: bs.Run, arm: str, budget: float, probe: dict) -> dict:
    """One arm's study, stopped by its trials' CPU seconds; resumed when it exists."""
    from autopeft.exceptions import StudyNotFoundError
    from autopeft.study import create_study, executor_factory, resume_study

    name = study_name(run.label, arm, run.seed)
    n_trials = N_TRIALS_CAP * run.args.budget_trials
    try:
        run.storage.get_study(name)
        say(f"{name}: resuming the search")
    except StudyNotFoundError:
        create_study(run.storage, name, space=SPACE, experiment=run.cfg,
                     controller=arm_preset(arm, run.args.population, n_trials),
                     seed=run.seed, n_trials=n_trials,
                     runs_dir=run.args.workdir / "runs", recipes=False)
        say(f"{name}: search, CPU budget {budget:.0f} s ({run.args.budget_trials} x "
            f"{probe['cpu_seconds']:.1f} s)")
    t0 = time.monotonic()
    resume_study(run.storage, name, executor_factory=executor_factory(evaluator=run.evaluator),
                 cpu_budget_s=budget).run()
    return run.res.add({"dataset": run.label, "side": arm, "seed": run.seed,
                        "stage": "searched", "study": name, "budget_cpu": budget,
                        "search_wall_seconds": time.monotonic() - t0,
                        **search_stats(run.storage, name)})


def search_stats(storage: Any, name: str) -> dict:
    """What the search did: trials by state, CPU seconds, PBT's rounds and exploits."""
    from autopeft.study.runner import trial_cpu_seconds

    trials = storage.get_trials(name)
    done = [t for t in trials if t.state.finished]
    rounds = {t.meta.get("round") for t in done if isinstance(t.meta.get("round"), int)}
    return {
        "cpu_seconds": sum(trial_cpu_seconds(t.metrics) or 0.0 for t in done if t.metrics),
        "trials": len(done), "complete": sum(t.state.value == "complete" for t in done),
        "pruned": sum(t.state.value == "pruned" for t in done),
        "failed": sum(t.state.value == "failed" for t in done),
        "rounds": len(rounds) if rounds else None,
        "exploits": sum(t.meta.get("parent") is not None for t in done) if rounds else None,
        "warm_starts": sum(t.warm_start_from is not None for t in done),
    }


def lineage(storage: Any, name: str, trial: Any) -> tuple[int, int]:
    """(trials in its warm-start chain, steps its weights trained in all: the sum of the
    chain's own steps; the step numbers of a trial's reports are not that past a chain of
    2, the runner offsets them by the parent's own steps only)."""
    chain, steps, t = 1, int(trial.metrics.steps), trial
    while t.warm_start_from is not None:
        t = storage.get_trial(name, t.warm_start_from)
        chain, steps = chain + 1, steps + int(t.metrics.steps)
    return chain, steps


def score_arm(run: bs.Run, arm: str, row: dict) -> dict:
    """The arm's best trial by proxy reward: (a) retrained at the full schedule, scored on
    test; (b) its own checkpoint scored on test."""
    from autopeft.candidate import Candidate
    from autopeft.exceptions import StudyNotFoundError, TrialFailedError
    from autopeft.finalize import rank_trials
    from autopeft.reward import score
    from autopeft.study import trial_seed

    name = row["study"]
    try:
        _, ranked = rank_trials(run.storage, name)  # finalize's own order
    except StudyNotFoundError:
        raise SystemExit(
            f"{run.res.path} says the search {name} ran, but {run.args.workdir} has no such "
            f"study (another --workdir?)\n  fix: pass the --workdir of that run, or delete "
            f"the row of arm {arm!r}, seed {run.seed} from {run.res.path}") from None
    feasible = [(t, reward) for t, reward, ok, _ in ranked if ok]
    if not feasible:
        return run.res.add({**row, "stage": "done", "error": "no feasible complete trial"})
    best, proxy_reward = feasible[0]
    chain, steps = lineage(run.storage, name, best)
    out = {**row, "best_trial": best.number, "best_round": best.meta.get("round"),
           "best_member": best.meta.get("member"), "chain": chain, "trained_steps": steps,
           "candidate": Candidate.from_dict(best.candidate).summary(),
           "proxy_reward": float(proxy_reward), "proxy_val_acc": float(best.metrics.metric),
           "n_test": run.n_test()}
    # (b) the member itself (cheap: one pass over test and validation)
    member = score_checkpoint(run, best)
    mt = score(dataclasses.replace(best.metrics, metric=member["test"]), run.cfg)
    out.update(member_test_acc=member["test"], member_test_reward=float(mt.reward),
               member_val=member["val"])
    # (a) its configuration, trained from scratch at the full schedule (finalize top-1)
    say(f"{name}: full-schedule training of trial {best.number} ({out['candidate']})")
    try:
        m = run.train(best.number, dict(best.candidate), run.full_cfg,
                      trial_seed(run.seed, best.number))
    except TrialFailedError as exc:
        return run.res.add({**out, "stage": "done", "full_test_acc": None,
                            "error": str(exc)[:500]})
    test = score(dataclasses.replace(m, metric=float(m.test_metric)), run.full_cfg)
    return run.res.add({**out, "stage": "done", "full_test_acc": float(m.test_metric),
                        "full_test_reward": float(test.reward), "full_val_acc": float(m.metric),
                        "full_steps": m.steps,
                        "full_cpu_seconds": (m.extra or {}).get("cpu_seconds"),
                        "params_ratio": m.cost.params_ratio,
                        "flops_ratio": m.cost.flops_ratio})


def score_checkpoint(run: bs.Run, trial: Any) -> dict:
    """A trial's saved weights scored as they are: the test split and, as a control of the
    loading, the proxy's validation subset (must give the trial's own validation score)."""
    import torch

    from autopeft import methods, taskdata
    from autopeft.candidate import Candidate
    from autopeft.evaluation.trainloop import TrainLoop
    from autopeft.study import trial_seed

    cfg = run.cfg  # the proxy config the checkpoint was trained under (same splits)
    s = run.evaluator.setup(cfg)
    built = methods.build(s.base, Candidate.from_dict(trial.candidate),
                          seed=trial_seed(run.seed, trial.number))
    built.load_adapter_weights(trial.metrics.checkpoint)
    model = built.model.to(s.device)
    enc = run.evaluator._encoded(s, cfg.proxy.max_length)  # the worker's tokenised data
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.resources.cpus)
    try:
        loop = TrainLoop(torch, model, enc, s.device, cfg, cfg.proxy, {},
                         use_token_types=getattr(s.base.model.config, "type_vocab_size",
                                                 None) is not None)
        _, val_idx, _ = taskdata.trial_subsets(s.raw.labels, s.splits, cfg.data, cfg.proxy)
        return {"test": float(loop.score(s.splits["test"])[0]),
                "val": float(loop.score(val_idx)[0])}
    finally:
        torch.set_num_threads(threads)


# -- the comparison (pure: fed the stored rows) ---------------------------------------------
def _stats(xs: Iterable[float]) -> tuple[float, float | None]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return float("nan"), None
    return sum(xs) / len(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _pm(mean: float, sd: float | None, scale: float = 1.0, fmt: str = ".4f") -> str:
    if math.isnan(mean):
        return "-"
    return f"{scale * mean:{fmt}}" + ("" if sd is None else f" +- {scale * sd:{fmt}}")


def compare(rows: list[dict], dataset: str, seeds: list[int]) -> dict:
    """Per arm: mean and sd over the seeds of every score; paired differences to
    pbt_inherit over the seeds where both arms are done."""
    done = {(r["side"], r["seed"]): r for r in rows if r["dataset"] == dataset
            and r["seed"] in seeds and r.get("stage") == "done"}
    keys = ("full_test_acc", "full_test_reward", "member_test_acc", "member_test_reward",
            "proxy_reward", "proxy_val_acc", "cpu_seconds", "trials", "trained_steps")
    per = {}
    for arm in ARMS:
        mine = [done[(arm, s)] for s in seeds if (arm, s) in done]
        per[arm] = {"seeds": [r["seed"] for r in mine],
                    **{k: _stats(r.get(k) for r in mine) for k in keys}}
        diffs = {}
        for k in ("full_test_acc", "member_test_acc"):
            d = [done[(arm, s)][k] - done[("pbt_inherit", s)][k] for s in seeds
                 if (arm, s) in done and ("pbt_inherit", s) in done
                 and done[(arm, s)].get(k) is not None
                 and done[("pbt_inherit", s)].get(k) is not None]
            diffs[k] = (_stats(d), len(d))
        per[arm]["minus_pbt"] = diffs
    n_test = next((r.get("n_test") for r in done.values() if r.get("n_test")), None)
    return {"per": per, "n_test": n_test}


def last_line(summary: dict, seeds: int, budget_trials: int, key: str = "full_test_acc") \
        -> str:
    vals = " ".join(f"{arm}={summary['per'][arm][key][0]:.4f}" for arm in
                    ("pbt_inherit", "pbt_no_inherit", "tpe_asha", "random"))
    return f"{vals} seeds={seeds} budget_trials={budget_trials}"


def report(res: bs.Results, dataset: str, seeds: list[int], budget_trials: int) -> str:
    summary = compare(res.rows, dataset, seeds)
    print(f"\n== {dataset}: PBT in real runs, seeds {seeds}, budget {budget_trials} proxy "
          f"trials of CPU per arm ==")
    for s in seeds:
        probe = res.get(dataset, "probe", s)
        if probe:
            print(f"seed {s}: budget unit {probe['cpu_seconds']:.1f} CPU s (LoRA r=8 q,v, "
                  f"{probe['steps']} steps)")
        for arm in ARMS:
            r = res.get(dataset, arm, s)
            if r is None:
                continue
            pbt = (f", {r['rounds']} rounds, {r['exploits']} exploits, {r['warm_starts']} "
                   f"warm starts" if r.get("rounds") is not None else "")
            best = (f"; best trial {r['best_trial']}: {r.get('candidate')} (chain "
                    f"{r.get('chain')}, {r.get('trained_steps')} steps, proxy val "
                    f"{r['proxy_val_acc']:.4f}, checkpoint re-scored {r['member_val']:.4f})"
                    if r.get("best_trial") is not None else "")
            err = f"; error: {r['error']}" if r.get("error") else ""
            print(f"  {arm:<15} {r['cpu_seconds']:6.0f} CPU s in {r['trials']} trials "
                  f"({r['pruned']} pruned, {r['failed']} failed{pbt}){best}{err}")
    per = summary["per"]
    print(f"\n{'arm':<15} {'full: test acc':>18} {'full: test R':>18} {'member: test acc':>18} "
          f"{'proxy R':>18} {'CPU s':>10} {'trials':>6}")
    for arm in ARMS:
        p = per[arm]
        print(f"{arm:<15} {_pm(*p['full_test_acc']):>18} {_pm(*p['full_test_reward']):>18} "
              f"{_pm(*p['member_test_acc']):>18} {_pm(*p['proxy_reward']):>18} "
              f"{_pm(*p['cpu_seconds'], fmt='.0f'):>10} {_pm(*p['trials'], fmt='.1f'):>6}")
    print("\npaired by seed, arm - pbt_inherit, test accuracy in points (mean +- sd, n):")
    for arm in ARMS[1:]:
        parts = []
        for k, what in (("full_test_acc", "full"), ("member_test_acc", "member")):
            (mean, sd), n = per[arm]["minus_pbt"][k]
            parts.append(f"{what} {_pm(mean, sd, 100, '+.2f')} (n={n})")
        print(f"  {arm:<15} " + "; ".join(parts))
    if summary["n_test"]:
        p = per["pbt_inherit"]["full_test_acc"][0]
        if not math.isnan(p):
            se = 100 * math.sqrt(max(p * (1 - p), 0.0) / summary["n_test"])
            print(f"one test accuracy's standard error: +-{se:.2f} points "
                  f"({summary['n_test']} test examples)")
    print("member: " + last_line(summary, len(seeds), budget_trials, "member_test_acc"))
    line = last_line(summary, len(seeds), budget_trials)
    print(line)
    return line


# -- main ---------------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", default="default",
                    help="experiment name or file (default: %(default)s)")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds 0..N-1 (default 2; --smoke: 1)")
    ap.add_argument("--budget-trials", type=int, default=12,
                    help="each arm's CPU budget in default proxy trials (default 12)")
    ap.add_argument("--population", type=int, default=4,
                    help="PBT's population (default 4: ~3 rounds in 12 trials)")
    ap.add_argument("--results", type=Path, default=None,
                    help=f"results file (default {RESULTS}; --smoke: in --workdir)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/autopeft_bench_pbt"),
                    help="the studies' database and checkpoints (default %(default)s)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, 1 seed: proves the machinery in minutes")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.seeds is None:
        args.seeds = 1 if args.smoke else 2
    for k in ("seeds", "budget_trials", "threads"):
        if getattr(args, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be at least 1")
    if args.population < 2:
        ap.error("--population must be at least 2")
    if args.smoke:
        args.workdir = args.workdir / "smoke" if args.workdir.name != "smoke" else args.workdir
    if args.results is None:
        args.results = args.workdir / "bench_pbt.json" if args.smoke else RESULTS
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import torch

    from autopeft.storage import open_storage

    torch.set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    n_trials = N_TRIALS_CAP * args.budget_trials
    res = bs.Results(args.results, {
        "smoke": args.smoke, "experiment": args.experiment, "space": SPACE,
        "budget_trials": args.budget_trials, "population": args.population,
        "recipes": False,
        "arms": {arm: preset_summary(arm, args.population, n_trials) for arm in ARMS}})
    storage = open_storage(f"sqlite:///{args.workdir / 'bench_pbt.db'}")
    seeds = list(range(args.seeds))
    try:
        for seed in seeds:
            run_seed(res, args.experiment, seed, args, storage)
    finally:
        storage.close()
    return report(res, bs.label_of(args.experiment), seeds, args.budget_trials)


if __name__ == "__main__":
    main()
