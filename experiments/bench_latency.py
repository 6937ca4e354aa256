"""Benchmark: the latency constraint's measurement (autopeft.cost.latency) on the real MiniLM,
against the 3-pair median it replaced.

For each standard recipe of search_spaces/default.yaml (autopeft.recipes: LoRA r=8 on q,v,
Pfeiffer and Houlsby adapters, a parallel adapter, IA3, BitFit, prefix tuning), on one
thread, side by side in one process:

  new    autopeft's method as a trial runs it (CostMeter's timing, limit 0.15): a merging
         candidate deploys merged and is not timed; the others are timed in alternating
         pairs on one 64-token request, one thread, with the thread's CPU time, until the
         99 % interval of the median pair ratio clears the limit, or the cap. Repeated
         --repeats times (fresh each time, nothing cached): ratio, interval, pairs,
         seconds, verdict.
  wall   the same with wall-clock time (--wall-repeats): what the CPU clock buys on a
         loaded machine.
  old    the method it replaced (three_pair_median): 3 candidate-then-base pairs within
         0.6 s, median/median - 1, wall clock, at its own shape (8 x 64 tokens) and at the
         new one (1 x 64), repeated --old-repeats times: its spread, and how many of its
         decisions against the 15 % limit disagree with the majority of its own repeats.

Controls, which expose a biased or over-confident method:
  base-vs-base  the base model against a second copy of itself: the true ratio is 0.
  lora merged   LoRA merged into the weights (peft merge_and_unload), timed against the
                base: the deployed form that the method scores 0 without timing.
And, for information, the unmerged LoRA, IA3 and BitFit (new method only: what their
flops_ratio charges; not decisions, since they deploy merged).

    .venv/bin/python experiments/bench_latency.py   # ~6 min on the 2-core box

Last line: `old_b8_flips=<k>/<n> old_b1_flips=<k>/<n> wall_flips=<k>/<n>
wall_uncertain=<u>/<n> new_flips=<k>/<n> new_uncertain=<u>/<n> new_seconds_median=<s>`, over
the rows that are decisions (the controls and the candidates that do not merge). A flip is
a repeat whose decision against 0.15 disagrees with the majority of that method's repeats
of the same row; an "uncertain" is not a decision (it is reported as such).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

LIMIT = 0.15


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="new-method measurements each")
    p.add_argument("--wall-repeats", type=int, default=3, help="wall-clock measurements each")
    p.add_argument("--old-repeats", type=int, default=15, help="3-pair medians each")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="row names to run")
    p.add_argument("--out", type=Path, default=None, help="also write the output here")
    return p.parse_args(argv)


def _rows(base):
    """(name, model, mergeable) for each standard recipe of default.yaml, plus controls."""
    from autopeft.cost.analytic import is_mergeable
    from autopeft.methods import build
    from autopeft.recipes import express
    from autopeft.space import load_space

    bound = load_space("default.yaml").bind(base.info.num_layers, base.info.hidden_size)
    recipes, _ = express(bound)
    rows = [("base-vs-base (control)", base.fresh().eval(), False)]
    for r in recipes:
        cand = bound.to_candidate(r.assignment)
        built = build(base, cand, seed=0)
        rows.append((r.name, built.model.eval(), is_mergeable(cand)))
        if r.name == "lora_r8_qv":
            merged = build(base, cand, seed=0).model.merge_and_unload().eval()
            rows.append(("lora_r8_qv merged (control)", merged, False))
    return rows


def _flips(decisions: list[bool]) -> int:
    """Repeats that disagree with the majority (ties count the smaller side)."""
    over = sum(decisions)
    return min(over, len(decisions) - over)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    import os

    import torch

    from autopeft.cost.latency import three_pair_median, verdict
    from autopeft.cost.measured import _reference_batch, _time_pairs
    from autopeft.models import load_base

    torch.set_num_threads(args.threads)
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    base = load_base("minilm", num_labels=6, seed=0)
    base_model = base.model.eval()
    vocab = base.info.vocab_size
    one = _reference_batch(base_model, vocab, 1, 64)
    eight = _reference_batch(base_model, vocab, 8, 64)
    t0 = time.perf_counter()
    say(f"MiniLM-L6, {args.threads} thread(s), limit {LIMIT}, load average "
        f"{os.getloadavg()[0]:.1f} at start; new/wall: 1 x 64 tokens, 99% interval; "
        f"old: 3 pairs within 0.6 s, wall clock")
    say("row: method  ratio [99% interval] pairs seconds verdict, per repeat")
    tally = {k: [0, 0, 0] for k in ("old b8", "old b1", "wall", "new")}  # flips, uncertain, n

    def fwd(m, x):
        def run():
            with torch.no_grad():
                m(**x)
        return run

    def paired(model, clock):
        settings = {} if clock is None else {"clock": clock}
        est = _time_pairs(model, base_model, one, limit=LIMIT, threads=args.threads,
                          settings=settings)
        v = verdict(est.low, est.high, LIMIT)
        cell = (f"{est.ratio:+.3f} [{est.low:+.3f},{est.high:+.3f}] {est.pairs} "
                f"{est.seconds:.1f}s {v}")
        return v, est.seconds, cell

    new_seconds = []
    for name, model, mergeable in _rows(base):
        if args.only and not any(o in name for o in args.only):
            continue
        if mergeable:
            say(f"{name}: deploys merged: +0.000 [+0.000,+0.000] 0 pairs, not timed; "
                f"unmerged, for information:")
        else:
            say(f"{name}:")
        sides = [("new", None, args.repeats)]
        if not mergeable:
            sides.append(("wall", time.perf_counter, args.wall_repeats))
        for side, clock, repeats in sides:
            results = [paired(model, clock) for _ in range(repeats)]
            say(f"  {side:6s} " + " | ".join(cell for _, _, cell in results))
            if mergeable:
                continue
            if side == "new" and "control" not in name:
                new_seconds += [sec for _, sec, _ in results]
            decided = [v == "over" for v, _, _ in results if v in ("over", "within")]
            tally[side][0] += _flips(decided)
            tally[side][1] += len(results) - len(decided)
            tally[side][2] += len(results)
        if mergeable:
            continue
        for shape, x in (("b8", eight), ("b1", one)):
            olds = [three_pair_median(fwd(model, x), fwd(base_model, x))
                    for _ in range(args.old_repeats)]
            over = [o > LIMIT for o in olds]
            tally[f"old {shape}"][0] += _flips(over)
            tally[f"old {shape}"][2] += len(over)
            say(f"  old {shape}: median {statistics.median(olds):+.3f} range "
                f"[{min(olds):+.3f},{max(olds):+.3f}] sd {statistics.stdev(olds):.3f}, "
                f"over 0.15 in {sum(over)}/{len(over)}")
    say(f"wall {time.perf_counter() - t0:.0f} s, load average {os.getloadavg()[0]:.1f} at end")
    med_s = statistics.median(new_seconds) if new_seconds else float("nan")
    t = tally
    say(f"old_b8_flips={t['old b8'][0]}/{t['old b8'][2]} "
        f"old_b1_flips={t['old b1'][0]}/{t['old b1'][2]} "
        f"wall_flips={t['wall'][0]}/{t['wall'][2]} wall_uncertain={t['wall'][1]}/{t['wall'][2]} "
        f"new_flips={t['new'][0]}/{t['new'][2]} new_uncertain={t['new'][1]}/{t['new'][2]} "
        f"new_seconds_median={med_s:.1f}")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
