"""Does length-grouped batching change what a trial measures?  (issue 12, item 3)

Each candidate (sampled from search_spaces/default.yaml, seeded) is trained on the
default proxy twice per seed: plain random batches (length_window 1) and length-grouped
batches (length_window W), everything else equal (rungs, cache, lean model as default).
Printed: tokens per batch (padded, real) for both, the accuracy difference per candidate
with its spread over seeds, the seed-to-seed difference at window 1 (the noise the
difference must be compared with), and Kendall tau of the two rankings beside the
window-1-vs-window-1 tau across seeds (the control).

    .venv/bin/python experiments/window_ablation.py --candidates 8 --seeds 2 --window 16
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="default")
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--sample-seed", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from autopeft.config import load_experiment
    from autopeft.evaluation.base import NullReporter
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.metrics import kendall_tau
    from autopeft.records import EvalRequest
    from bench_trial import padding_report, tau_candidates

    torch.set_num_threads(1)
    cfg = load_experiment(args.experiment)
    sides = {}
    for w in (1, args.window):
        c = dataclasses.replace(cfg, proxy=dataclasses.replace(cfg.proxy, length_window=w))
        ev = ProxyEvaluator(c.to_dict())
        sides[w] = (ev, c.to_dict())

    class _Side:  # what padding_report reads
        def __init__(self, ev):
            self.ev = ev

    import bench_trial
    bench_trial.WINDOW = args.window
    padding_report("train", _Side(sides[1][0]), cfg)
    cands = tau_candidates(args.candidates, args.sample_seed)
    acc: dict[tuple[str, int, int], float] = {}
    t0 = time.perf_counter()
    for i, (name, c) in enumerate(cands.items()):
        for seed in range(args.seeds):
            for w in ((1, args.window) if (i + seed) % 2 == 0 else (args.window, 1)):
                ev, exp = sides[w]
                m = ev.evaluate(EvalRequest("w", i, c, exp, seed=seed), NullReporter())
                acc[(name, seed, w)] = m.metric
            print(f"  {name:64s} seed {seed}: window 1 {acc[(name, seed, 1)]:.4f}  window "
                  f"{args.window} {acc[(name, seed, args.window)]:.4f}  "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
    names = list(cands)
    diffs = [acc[(n, s, args.window)] - acc[(n, s, 1)] for n in names for s in range(args.seeds)]
    noise = [acc[(n, 1, 1)] - acc[(n, 0, 1)] for n in names] if args.seeds > 1 else []
    print(f"accuracy window {args.window} - window 1: mean {statistics.mean(diffs):+.4f}, "
          f"sd {statistics.pstdev(diffs):.4f}, range [{min(diffs):+.4f}..{max(diffs):+.4f}] "
          f"over {len(diffs)} (candidate, seed) pairs")
    if noise:
        print(f"control, window 1 seed 1 - seed 0: mean {statistics.mean(noise):+.4f}, sd "
              f"{statistics.pstdev(noise):.4f}, range [{min(noise):+.4f}..{max(noise):+.4f}]")
    mean = {w: [statistics.mean(acc[(n, s, w)] for s in range(args.seeds)) for n in names]
            for w in (1, args.window)}
    print(f"kendall tau, window {args.window} vs window 1 (seed means): "
          f"{kendall_tau(mean[args.window], mean[1]):.3f}")
    if args.seeds > 1:
        print(f"control tau, window 1 seed 0 vs seed 1: "
              f"{kendall_tau([acc[(n, 0, 1)] for n in names], [acc[(n, 1, 1)] for n in names]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
