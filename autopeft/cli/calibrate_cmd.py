"""`autopeft calibrate NAME`: retrain k proxy trials at full fidelity, say whether the
proxy's ranking holds (autopeft.calibrate does the work)."""
from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="retrain k trials at full fidelity: does the proxy's ranking hold?",
        description="Retrain k of the study's completed trials with the experiment's full "
                    "schedule (the proxy's top ones and some further down), store them with "
                    "the study, and print Kendall's tau between the proxy's ranking and the "
                    "full training's test ranking, and the top-1 regret. Run it again after "
                    "a stop or a crash: finished retrainings are kept. finalize reuses them.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--k", type=int, default=6, metavar="K",
                   help="trials to retrain (default 6: the top 3 and 3 spread below)")
    p.add_argument("--storage", metavar="URL")
    p.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from autopeft.calibrate import calibrate_study
    from autopeft.storage import open_storage

    storage = open_storage(args.storage, create=False, study=args.name)
    storage.get_study(args.name)  # StudyNotFoundError (exit 2) before anything else
    try:
        result = calibrate_study(storage, args.name, k=args.k,
                                 evaluator_factory=getattr(args, "evaluator_factory", None),
                                 log=lambda s: print(s, file=sys.stderr))
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished retrainings are stored; continue with "
              f"`autopeft calibrate {args.name}`", file=sys.stderr)
        return 130
    for line in result_lines(result):
        print(line)
    return 0


def result_lines(result) -> list[str]:
    lines = calibration_lines(result.records)
    a = result.agreement
    if a is None:
        lines.append("fewer than 2 retrainings completed: no ranking to compare")
        return lines
    done = [r for r in result.records if r.status == "complete" and r.test_reward is not None]
    pb, fb = done[a.proxy_best], done[a.full_best]
    lines.append(f"kendall tau (proxy validation reward vs full test reward): {a.tau:.3f} "
                 f"over {a.n} trials; vs full validation reward: {result.tau_validation:.3f}")
    lines.append(f"top-1 regret: {a.regret_points:.2f} points of test reward (proxy's best "
                 f"trial {pb.proxy_trial}: test {pb.metrics.test_metric:.4f}; best of the "
                 f"{a.n}: trial {fb.proxy_trial}: test {fb.metrics.test_metric:.4f})")
    for i, w in enumerate(result.warnings):
        lines.append(("warning: " if i == 0 else "  suggestion: ") + w)
    lines.append(f"kendall_tau={a.tau:.3f} top1_regret={a.regret_points:.2f} n={a.n}")
    return lines


def calibration_lines(records) -> list[str]:
    """The full-fidelity table (also printed by `autopeft show`)."""
    head = (f"{'proxy#':>6} {'status':<11} {'proxy':>7} {'full val':>8} {'test':>7} "
            f"{'steps':>6}  candidate")
    lines = ["full-fidelity calibration (not counted as search trials)", head,
             "-" * len(head)]
    from autopeft.candidate import Candidate

    for r in records:
        m = r.metrics
        proxy = "-" if r.proxy_metric is None else f"{r.proxy_metric:.4f}"
        val = "-" if m is None else f"{m.metric:.4f}"
        test = "-" if m is None or m.test_metric is None else f"{m.test_metric:.4f}"
        steps = "-" if m is None else str(m.steps)
        summary = Candidate.from_dict(r.candidate).summary()
        if r.error:
            summary += f"  [{r.error.strip().splitlines()[0][:80]}]"
        lines.append(f"{r.proxy_trial:>6} {r.status:<11} {proxy:>7} {val:>8} {test:>7} "
                     f"{steps:>6}  {summary}")
    return lines
