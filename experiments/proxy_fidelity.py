"""Does the proxy trial rank *close* candidates the way full training does? (issue 13.3)

The hard case a user faces: choosing among LoRA and adapter configurations from the
upper part of the default space (search_spaces/default.yaml), which lie within a few
points of each other after full training. Each candidate is trained, for each of
--seeds seeds (the trial seed drives the modules' init, dropout and the batch order;
the classifier head starts from the base model's, loaded once, as in a search):

- at proxy fidelity (the experiment's `proxy` section: what a search trial does), scored
  on the proxy's validation subset;
- at full fidelity (the experiment's own `full` section: what finalize and `autopeft
  calibrate` train), scored on the held-out *test* split. Test, not validation: the
  full validation set contains the proxy's validation examples, and the two rankings
  would share their evaluation noise.

Candidates are ranked by their mean over the seeds. Printed: Kendall's tau-b (proxy
validation vs full test), top-3 recall (is the full-training best in the proxy's top
3?), top-1 regret (test points lost by taking the proxy's best instead of the full
best), the spread of the full test scores (is this the hard case, within ~5 points?),
and the seed noise: tau between two seeds' full test rankings, the agreement that any
proxy could hope for.

    .venv/bin/python experiments/proxy_fidelity.py [--experiment default] [--seeds 2]
        [--candidates N] [--full-steps S] [--proxy-steps P] [--proxy-validation V]
        [--results /tmp/autopeft_fidelity_hard.json] [--threads 1]

Full run (14 candidates x 2 seeds x (proxy + full), default experiment): 28 full
trainings of 3 epochs on TREC-6 (~810 steps each, patience 3) plus 28 proxy trials;
a full training is ~2-4 min of one quiet CPU core here, so about 1.5-2.5 hours.
Smoke run (proves the script works, ~3 min):

    .venv/bin/python experiments/proxy_fidelity.py --candidates 3 --seeds 1 \\
        --full-steps 20 --proxy-steps 10 --results /tmp/fidelity_smoke.json

Results are saved to --results as they come; a rerun continues where it stopped (a
results file of another setting is refused). The last line is
`kendall_tau=<t> top1_regret=<points> top3_recall=<r> n=<n>`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ALL = [0, 1, 2, 3, 4, 5]
TOP = [3, 4, 5]    # `last: 0.5` on MiniLM-L6


def _lora(rank, targets, layers=ALL, init="default"):
    return {"type": "lora", "layers": layers, "targets": targets, "rank": rank,
            "alpha": 16.0, "init": init}


def _adapter(size, placement="pfeiffer", layers=ALL):
    return {"type": "adapter", "layers": layers, "size": size, "placement": placement}


# name -> (modules, learning rate): choices of default.yaml, at learning rates inside its
# 1e-4..1e-2 range where LoRA and adapters train well (the upper part of the space)
CANDIDATES = {
    "lora_r8_qv": ([_lora(8, ["q", "v"])], 1e-3),
    "adapter_64": ([_adapter(64)], 1e-3),
    "lora_r16_qkvo": ([_lora(16, ["q", "k", "v", "o"])], 1e-3),
    "parallel_adapter_64": ([{"type": "parallel_adapter", "layers": ALL, "size": 64}], 1e-3),
    "lora_r4_qkvo": ([_lora(4, ["q", "k", "v", "o"])], 1e-3),
    "adapter_64_houlsby": ([_adapter(64, "houlsby")], 1e-3),
    "lora_r8_qv_ffn": ([_lora(8, ["q", "v", "ffn_in", "ffn_out"])], 1e-3),
    "adapter_16": ([_adapter(16)], 3e-3),
    "lora_r16_qv": ([_lora(16, ["q", "v"])], 1e-3),
    "parallel_adapter_16": ([{"type": "parallel_adapter", "layers": ALL, "size": 16}], 3e-3),
    "lora_r8_qv_lr3e-3": ([_lora(8, ["q", "v"])], 3e-3),
    "lora_r8_qkvo_pissa": ([_lora(8, ["q", "k", "v", "o"], init="pissa")], 1e-3),
    "lora_r16_qkvo_top": ([_lora(16, ["q", "k", "v", "o"], TOP)], 1e-3),
    "adapter_64_top": ([_adapter(64, layers=TOP)], 1e-3),
}


def _configs(args):
    from autopeft.config import load_experiment

    cfg = load_experiment(args.experiment)
    if args.threads:
        cfg = dataclasses.replace(cfg, resources=dataclasses.replace(cfg.resources,
                                                                     cpus=args.threads))
    if args.full_steps:
        cfg = dataclasses.replace(cfg, full=dataclasses.replace(
            cfg.full, max_steps=args.full_steps, epochs=None,
            eval_every=min(cfg.full.eval_every, args.full_steps)))
    if args.proxy_steps:
        cfg = dataclasses.replace(cfg, proxy=dataclasses.replace(
            cfg.proxy, max_steps=args.proxy_steps, epochs=None,
            eval_every=min(cfg.proxy.eval_every, args.proxy_steps)))
    if args.proxy_validation:
        cfg = dataclasses.replace(cfg, proxy=dataclasses.replace(
            cfg.proxy, validation_examples=args.proxy_validation))
    return cfg


def _run(ev, cfg, name, index, seed):
    """One candidate under one seed at both fidelities; None if it failed."""
    from autopeft.evaluation.base import NullReporter
    from autopeft.exceptions import TrialFailedError
    from autopeft.records import EvalRequest

    modules, lr = CANDIDATES[name]
    cand = {"modules": modules, "hyper": {"learning_rate": lr}, "num_layers": 6}
    row = {}
    for label, exp in (("proxy", cfg.to_dict()), ("full", cfg.for_final().to_dict())):
        t = time.perf_counter()
        try:
            m = ev.evaluate(EvalRequest("fidelity", index, cand, exp, seed=seed),
                            NullReporter())
        except TrialFailedError as exc:
            print(f"{name} seed {seed}: {label} run failed: {exc}", flush=True)
            return None
        row[f"{label}_val"] = m.metric
        row[f"{label}_seconds"] = round(time.perf_counter() - t, 1)
        row[f"{label}_steps"] = m.steps
        if label == "full":
            row["full_test"] = m.test_metric
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="default")
    ap.add_argument("--candidates", type=int, default=len(CANDIDATES),
                    help=f"the first N of the {len(CANDIDATES)} candidates")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per candidate (default 2)")
    ap.add_argument("--full-steps", type=int, default=None,
                    help="cap the full training at S steps (smoke runs only; default: the "
                         "experiment's own full schedule)")
    ap.add_argument("--proxy-steps", type=int, default=None,
                    help="proxy.max_steps to try instead of the experiment's")
    ap.add_argument("--proxy-validation", type=int, default=None,
                    help="proxy.validation_examples to try instead of the experiment's")
    ap.add_argument("--results", default="/tmp/autopeft_fidelity_hard.json")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if not 2 <= args.candidates <= len(CANDIDATES) or args.seeds < 1:
        ap.error(f"--candidates must be 2..{len(CANDIDATES)} and --seeds >= 1")

    from autopeft.calibrate import agreement
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.metrics import kendall_tau

    cfg = _configs(args)
    print(f"proxy: {cfg.proxy}\nfull:  {cfg.full}", flush=True)
    path = Path(args.results)
    done = json.loads(path.read_text()) if path.is_file() else {}
    setting = {"proxy": cfg.to_dict()["proxy"], "full": cfg.to_dict()["full"],
               "optimizer": cfg.to_dict()["optimizer"], "data": cfg.to_dict()["data"]}
    if done.get("_setting") not in (None, setting):
        print(f"{path} holds results of another setting: pass another --results",
              file=sys.stderr)
        return 2
    done["_setting"] = setting
    ev = ProxyEvaluator(cfg.to_dict())
    names = list(CANDIDATES)[: args.candidates]
    seeds = [cfg.seed + s for s in range(args.seeds)]
    for i, name in enumerate(names):
        for seed in seeds:
            key = f"{name}|{seed}"
            if key in done:
                continue
            row = _run(ev, cfg, name, i, seed)
            if row is None:
                continue
            done[key] = row
            path.write_text(json.dumps(done, indent=1))
            print(f"{name:22s} seed {seed}  proxy val {row['proxy_val']:.4f} "
                  f"({row['proxy_seconds']:.0f}s)  full test {row['full_test']:.4f} "
                  f"(val {row['full_val']:.4f}, {row['full_steps']} steps, "
                  f"{row['full_seconds']:.0f}s)", flush=True)
    rows = {n: [done[f"{n}|{s}"] for s in seeds if f"{n}|{s}" in done] for n in names}
    rows = {n: r for n, r in rows.items() if len(r) == len(seeds)}
    if len(rows) < 2:
        print("fewer than two candidates finished", file=sys.stderr)
        return 1
    order = list(rows)
    proxy = [statistics.mean(r["proxy_val"] for r in rows[n]) for n in order]
    full = [statistics.mean(r["full_test"] for r in rows[n]) for n in order]
    a = agreement(proxy, full)
    by_full = sorted(range(len(order)), key=lambda i: -full[i])
    print(f"\nrank  candidate               full test (seeds)          proxy val (seeds)")
    for r, i in enumerate(by_full, 1):
        ft = " ".join(f"{x['full_test']:.4f}" for x in rows[order[i]])
        pv = " ".join(f"{x['proxy_val']:.4f}" for x in rows[order[i]])
        print(f"{r:4d}  {order[i]:22s} {full[i]:.4f} ({ft})  {proxy[i]:.4f} ({pv})")
    print(f"full test spread: {100 * (max(full) - min(full)):.1f} points over {len(order)} "
          f"candidates; proxy's best {order[a.proxy_best]}, full best {order[a.full_best]}")
    if len(seeds) >= 2:
        noise = kendall_tau([rows[n][0]["full_test"] for n in order],
                            [rows[n][1]["full_test"] for n in order])
        sd = statistics.mean(statistics.stdev(x["full_test"] for x in rows[n]) for n in order)
        print(f"seed noise: tau between two seeds' full test rankings {noise:.3f}; mean "
              f"seed std of full test {100 * sd:.2f} points")
    cost = sum(x["proxy_seconds"] for r in rows.values() for x in r)
    print(f"proxy cost: {cost / sum(len(r) for r in rows.values()):.0f} s per trial (mean)")
    print(f"kendall_tau={a.tau:.3f} top1_regret={a.regret_points:.2f} "
          f"top3_recall={1.0 if a.top3_recall else 0.0:.1f} n={a.n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
