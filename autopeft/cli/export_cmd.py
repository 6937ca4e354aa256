"""`autopeft export`, `report`, `finalize` and `train`: from a finished search to a model."""
from __future__ import annotations

import argparse
import sys

from autopeft.cli import args as args_


def register(sub) -> None:
    e = sub.add_parser("export", help="write the best configuration(s) as peft / AdapterHub "
                                      "configs plus autopeft's candidate YAML",
                       description="Re-rank stored trials (optionally with a new lambda or "
                                   "constraint, without retraining) and export the winners.")
    e.add_argument("name", metavar="NAME")
    e.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory")
    e.add_argument("--top-k", type=args_.positive_int, default=1, metavar="K")
    e.add_argument("--pareto", action="store_true",
                   help="export every trial on the accuracy vs cost Pareto front")
    e.add_argument("--lambda", dest="lam", type=args_.cost_weight, default=None, metavar="L",
                   help="re-score with this cost penalty weight")
    e.add_argument("--max-params", type=args_.params_fraction, default=None, metavar="P",
                   help="only trials with params_ratio <= P (a fraction, 0.05 = 5%%)")
    e.add_argument("--storage", metavar="URL")
    e.set_defaults(func=run_export)

    r = sub.add_parser("report", help="plots and an HTML page for a study")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--out", required=True, metavar="DIR")
    r.add_argument("--storage", metavar="URL")
    r.set_defaults(func=run_report)

    f = sub.add_parser("finalize", help="re-train the top-k on the full task, score them on "
                                        "the held-out test split, keep the best feasible one")
    f.add_argument("name", metavar="NAME")
    f.add_argument("--top-k", type=args_.positive_int, default=3, metavar="K")
    f.add_argument("--out", default=None, metavar="DIR",
                   help="export the winner here (default: <runs-dir>/<study>/final)")
    f.add_argument("--storage", metavar="URL")
    f.set_defaults(func=run_finalize)

    t = sub.add_parser("train", help="fully train an exported configuration and save the adapter")
    t.add_argument("config", metavar="CONFIG",
                   help="an exported directory (or its autopeft_candidate.yaml)")
    t.add_argument("--out", required=True, metavar="DIR")
    t.add_argument("--experiment", default=None, metavar="FILE",
                   help="experiment YAML (default: the one the candidate was searched with)")
    t.add_argument("--seed", type=args_.seed, default=None)
    t.set_defaults(func=run_train)


def run_export(args: argparse.Namespace) -> int:
    from autopeft.finalize import check_out_dir
    from autopeft.candidate import Candidate
    from autopeft.exceptions import ExportError
    from autopeft.export import export_candidate
    from autopeft.finalize import provenance, rank_trials
    from autopeft.report import pareto_front
    from autopeft.storage import open_storage

    out = check_out_dir(args.out)
    storage = open_storage(args.storage, create=False, study=args.name)
    info, ranked = rank_trials(storage, args.name, lam=args.lam, max_params=args.max_params)
    feasible = [r for r in ranked if r[2]]
    if not feasible:
        raise ExportError(
            f"study {args.name!r} has no completed trial that meets the constraints "
            f"({len(ranked)} completed).\n  fix: run more trials (autopeft resume "
            f"{args.name} --trials N) or relax --max-params / the experiment's constraints")
    if args.pareto:
        pts = [(r[0].metrics.cost.params_ratio, r[0].metrics.metric) for r in feasible]
        chosen = [feasible[i] for i in pareto_front(pts)]
    else:
        chosen = feasible[: max(1, args.top_k)]
    single = len(chosen) == 1
    for rank, (trial, reward, _, _) in enumerate(chosen, 1):
        target = out if single else out / f"rank{rank}-trial{trial.number}"
        export_candidate(Candidate.from_dict(trial.candidate), target,
                         model_ref=info.experiment.get("model"),
                         provenance=provenance(info, trial, reward))
        print(f"exported trial {trial.number} (reward {reward:.4f}, "
              f"{trial.metrics.metric_name} {trial.metrics.metric:.4f}, params "
              f"{100 * trial.metrics.cost.params_ratio:.3f}%) -> {target}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from autopeft.report import write_report
    from autopeft.storage import open_storage

    storage = open_storage(args.storage, create=False, study=args.name)
    info = storage.get_study(args.name)
    from autopeft.calibrate import load_records

    paths = write_report(storage.get_trials(args.name), args.out, title=f"autopeft study {info.name}",
                         calibration=list(load_records(storage, args.name).values()))
    for p in paths:
        print(p)
    return 0


def run_finalize(args: argparse.Namespace) -> int:
    from autopeft.finalize import finalize_study
    from autopeft.storage import open_storage

    storage = open_storage(args.storage, create=False, study=args.name)
    result = finalize_study(storage, args.name, top_k=args.top_k, out_dir=args.out,
                            log=lambda s: print(s, file=sys.stderr))
    for row in result["candidates"]:
        print(f"trial {row['trial']}: test {row['test_metric']:.4f}  validation "
              f"{row['val_metric']:.4f}  params {100 * row['params_ratio']:.3f}%  "
              f"feasible {row['feasible']}")
    print(f"winner: trial {result['winner']} -> {result['export_dir']}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from autopeft.finalize import check_out_dir
    from autopeft.finalize import train_exported

    check_out_dir(args.out)
    result = train_exported(args.config, args.out, experiment_path=args.experiment,
                            seed=args.seed, log=lambda s: print(s, file=sys.stderr))
    print(f"trained: validation {result['val_metric']:.4f}, test {result['test_metric']:.4f} "
          f"-> {args.out}")
    return 0
