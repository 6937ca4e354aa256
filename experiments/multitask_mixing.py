"""How should a multi-task trial order its batches?  Mixed batches against per-task batches,
beside the single-task trials they replace (issue 13.2, autopeft/evaluation/multitask.py).

autopeft's multi-task trial joins the tasks' train subsets and shuffles them together:
every batch mixes the tasks (`mixed`, what the product does).  The alternative measured
here is `per_task`: each task's examples shuffled and cut into one-task batches, the
batches of all tasks then shuffled together (every example still once per epoch; the
order MT-DNN uses).  Printed per candidate and seed: the trial's training seconds, each
task's validation score and the mean; then the padded tokens per batch of one epoch's
order in each mode, which is where their costs differ (a mixed batch pads to its longest
example across tasks).  Single-task trials of each task, with the same steps, run beside
them as the baseline cost.

    .venv/bin/python experiments/multitask_mixing.py [--experiment multitask.yaml]
        [--candidates lora_r8_qv,pfeiffer_adapter,ia3] [--seeds 1] [--steps N]

Runs one trial at a time on --threads threads.  The last line is
`mixed_seconds=<s> per_task_seconds=<s> mean_abs_score_diff=<d> n=<n>`.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time


def per_task_order(starts: list[int]):
    """A batching.grouped_order stand-in: one-task batches, shuffled together."""
    import torch

    bounds = torch.tensor(starts[1:])

    def order(lengths, idx, batch_size, *, generator, window=1):
        idx = torch.as_tensor(idx, dtype=torch.int64)
        task = torch.bucketize(idx, bounds, right=True)
        batches = []
        for t in task.unique().tolist():
            sub = idx[task == t]
            sub = sub[torch.randperm(sub.numel(), generator=generator)]
            batches.extend(sub.split(batch_size))
        perm = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in perm]

    return order


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="multitask.yaml")
    ap.add_argument("--candidates", default="lora_r8_qv,pfeiffer_adapter,ia3",
                    help="recipe names of search_spaces/default.yaml")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None, help="proxy.max_steps instead")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from autopeft.config import load_experiment
    from autopeft.evaluation import batching
    from autopeft.evaluation.base import NullReporter
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.recipes import express
    from autopeft.records import EvalRequest
    from autopeft.space import load_space

    torch.set_num_threads(args.threads)
    cfg = load_experiment(args.experiment)
    if not cfg.tasks:
        ap.error(f"{args.experiment} has one task: give a multi-task experiment")
    proxy = dataclasses.replace(cfg.proxy, **({"max_steps": args.steps, "epochs": None,
                                               "eval_every": min(cfg.proxy.eval_every,
                                                                 args.steps)}
                                              if args.steps else {}))
    cfg = dataclasses.replace(cfg, proxy=proxy, resources=dataclasses.replace(
        cfg.resources, cpus=args.threads))
    bound = load_space("default.yaml").bind(num_layers=6, hidden_size=384)
    recipes = {e.name: bound.to_candidate(e.assignment).to_dict() for e in express(bound)[0]}
    names = args.candidates.split(",")
    multi = ProxyEvaluator(cfg.to_dict())
    singles = {}
    for t in cfg.task_names:
        one = dataclasses.replace(cfg, target=t).for_target()
        singles[t] = (one, ProxyEvaluator(one.to_dict()))
    s = multi.setup()
    starts = [t.start for t in s.tasks.tasks]
    enc = multi._encoded(s, proxy.max_length)
    train_idx = s.tasks.subsets(proxy)[0]
    real_order = batching.grouped_order
    for mode, fn in (("mixed", real_order), ("per_task", per_task_order(starts))):
        batches = fn(enc.lengths, train_idx, cfg.optimizer.batch_size,
                     generator=torch.Generator().manual_seed(0), window=1)
        padded, tokens = batching.padded_tokens(enc.lengths, batches)
        print(f"{mode:9s} one epoch: {padded:.0f} padded tokens per batch of "
              f"{tokens:.0f} real ({len(batches)} batches)")

    rows = {"mixed": [], "per_task": []}
    for i, name in enumerate(names):
        cand = recipes[name]
        for seed in range(args.seeds):
            req = EvalRequest("mixing", i, cand, cfg.to_dict(), seed=seed)
            for mode in ("mixed", "per_task"):
                batching.grouped_order = (real_order if mode == "mixed"
                                          else per_task_order(starts))
                try:
                    t0 = time.perf_counter()
                    m = multi.evaluate(req, NullReporter())
                finally:
                    batching.grouped_order = real_order
                rows[mode].append((m.train_seconds, m.metric, m.task_scores))
                print(f"{name:18s} seed {seed} {mode:9s} train {m.train_seconds:5.1f}s "
                      f"(trial {time.perf_counter() - t0:5.1f}s)  mean {m.metric:.4f}  " +
                      "  ".join(f"{k} {v:.4f}" for k, v in m.task_scores.items()),
                      flush=True)
            for t, (one, ev) in singles.items():
                m = ev.evaluate(EvalRequest("mixing", i, cand, one.to_dict(), seed=seed),
                                NullReporter())
                print(f"{name:18s} seed {seed} {'only ' + t:18s} train {m.train_seconds:5.1f}s"
                      f"  {m.metric_name} {m.metric:.4f}", flush=True)
    mixed = statistics.mean(r[0] for r in rows["mixed"])
    per = statistics.mean(r[0] for r in rows["per_task"])
    diff = statistics.mean(abs(a[1] - b[1]) for a, b in zip(rows["mixed"], rows["per_task"]))
    print(f"mixed_seconds={mixed:.1f} per_task_seconds={per:.1f} "
          f"mean_abs_score_diff={diff:.4f} n={len(rows['mixed'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
