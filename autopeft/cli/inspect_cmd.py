"""`autopeft ls` lists studies; `autopeft show NAME` prints a study's leaderboard."""
from __future__ import annotations

import argparse
import time

from autopeft.cli import args as args_
from autopeft.cli.output import leaderboard_lines, print_json, sort_trials, trial_row


def register(sub) -> None:
    p = sub.add_parser("ls", help="list studies")
    p.add_argument("--storage", metavar="URL")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_ls)

    s = sub.add_parser("show", help="print a study's leaderboard")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--storage", metavar="URL")
    s.add_argument("--top", type=args_.positive_int, default=None, metavar="K",
                   help="only the best K")
    s.add_argument("--json", action="store_true",
                   help="one object per trial: number, state, candidate, metrics, reward")
    s.set_defaults(func=run_show)


def run_ls(args: argparse.Namespace) -> int:
    from autopeft.exceptions import NoDatabaseError
    from autopeft.storage import open_storage

    try:
        studies = open_storage(args.storage, create=False).list_studies()
    except NoDatabaseError as exc:  # nothing stored yet: an empty list, and no new file
        if args.json:
            print_json([])
        else:
            print(f"no studies ({getattr(exc, 'what', exc)}; start one with: autopeft "
                  f"search --space default.yaml)")
        return 0
    if args.json:
        print_json([s.to_dict() for s in studies])
        return 0
    if not studies:
        print("no studies (start one with: autopeft search --space default.yaml)")
        return 0
    print(f"{'study':<32} {'status':<12} {'trials':>9} {'best':>8}  controller  created")
    for s in studies:
        done = f"{s.n_finished}/{s.n_trials}"
        best = "-" if s.best_reward is None else f"{s.best_reward:.4f}"
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created_at))
        print(f"{s.name:<32} {s.status:<12} {done:>9} {best:>8}  {s.controller:<10}  {created}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from autopeft.storage import open_storage

    storage = open_storage(args.storage, create=False, study=args.name)
    info = storage.get_study(args.name)
    trials = storage.get_trials(args.name)
    if args.json:
        rows = [trial_row(t) for t in sort_trials(trials)]
        print_json(rows[: args.top] if args.top else rows)
        return 0
    print(f"study {info.name}: {info.status}, controller {info.controller}, seed {info.seed}, "
          f"model {info.experiment.get('model')}, space fingerprint {info.space_fingerprint[:12]}")
    for line in leaderboard_lines(trials, args.top):
        print(line)
    from autopeft.calibrate import load_records
    from autopeft.cli.calibrate_cmd import calibration_lines

    calibrated = list(load_records(storage, args.name).values())
    if calibrated:  # full-fidelity results of `autopeft calibrate`, apart from the trials
        print("\n" + "\n".join(calibration_lines(calibrated)))
    return 0
