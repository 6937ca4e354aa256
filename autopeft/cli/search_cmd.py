"""`autopeft search` creates a study and runs it; `autopeft resume NAME` continues one."""
from __future__ import annotations

import argparse
import sys

from autopeft.cli import args as args_
from autopeft.cli.output import ProgressPrinter, print_leaderboard

DEFAULT_CONTROLLER = "tpe_asha"  # model-based, with multi-fidelity pruning (issue 11)
DEFAULT_EXPERIMENT = "default.yaml"
DEFAULT_TRIALS = 16   # 7 recipes on default.yaml, then 9 searched: minutes here


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="URL",
                   help="database URL (default: sqlite:///autopeft.db in this directory; "
                        "postgresql://user@host/db for many workers)")
    p.add_argument("--workers", type=args_.workers, default=None, metavar="K",
                   help="parallel trials on a local Ray runtime (default 1: in-process)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="join an existing Ray cluster (started with `ray start --head`)")
    p.add_argument("--executor", choices=("auto", "serial", "ray"), default="auto",
                   help="auto: Ray when --workers > 1 or --ray-address is given, else serial")
    p.add_argument("--max-retries", type=args_.count, default=2,
                   help="re-runs of a trial whose worker crashed (default 2)")
    p.add_argument("--budget", type=args_.duration, default=None, metavar="TIME",
                   help="wall-clock budget of this run, e.g. 20m or 1.5h: no trial starts "
                        "after it (running ones finish); `resume` continues the study")
    p.add_argument("--quiet", action="store_true", help="no live progress line")


def register(sub) -> None:
    p = sub.add_parser("search", help="create a study and run it",
                       description="Create a study and run it. `search` never continues an "
                                   "existing study: use `autopeft resume NAME` for that.")
    p.add_argument("--space", required=True, metavar="FILE",
                   help="search space YAML (a path, or a shipped name such as default.yaml)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, metavar="FILE",
                   help=f"experiment YAML: model, data, proxy fidelity, reward (default: "
                        f"{DEFAULT_EXPERIMENT}, MiniLM on TREC-6, offline)")
    p.add_argument("--controller", default=DEFAULT_CONTROLLER, metavar="NAME",
                   help="controller preset (random, tpe, tpe_asha, motpe, nsga2, lstm, "
                        f"pbt) or a preset YAML (default {DEFAULT_CONTROLLER})")
    p.add_argument("--study", type=args_.study_name, metavar="NAME",
                   help="study name: letters, digits, _ . - (default: <space>-<time>)")
    p.add_argument("--trials", type=args_.positive_int, default=DEFAULT_TRIALS, metavar="N",
                   help=f"number of finished trials to reach (default {DEFAULT_TRIALS})")
    p.add_argument("--seed", type=args_.seed, default=None,
                   help="study seed (default: the experiment's seed)")
    p.add_argument("--runs-dir", default="autopeft_runs", metavar="DIR",
                   help="where trial checkpoints go (default ./autopeft_runs)")
    p.add_argument("--no-recipes", action="store_true",
                   help="do not begin with the standard recipes the space can express "
                        "(LoRA r=8, adapters, IA3, BitFit, prefix; autopeft.recipes)")
    _add_run_options(p)
    p.set_defaults(func=run_search)

    r = sub.add_parser("resume", help="continue a study after a stop, a crash or Ctrl-C",
                       description="Continue a stored study: interrupted trials re-run, "
                                   "finished ones are kept; refuses a changed space file.")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--trials", type=args_.positive_int, default=None, metavar="N",
                   help="raise the study's trial budget to N")
    _add_run_options(r)
    r.set_defaults(func=run_resume)


def run_search(args: argparse.Namespace) -> int:
    from autopeft.storage import open_storage
    from autopeft.study import create_study, plan_study

    # every input (space, experiment, preset, data) is checked before the storage is
    # opened: a refused search writes nothing, not even an empty database file
    plan = plan_study(args.study, space=args.space, experiment=args.experiment,
                      controller=args.controller, seed=args.seed, n_trials=args.trials,
                      runs_dir=args.runs_dir, recipes=not args.no_recipes)
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)  # skipped recipes, a budget below them
    storage = open_storage(args.storage)
    name = create_study(storage, plan=plan)
    print(f"study {name}: {plan.n_trials} trials, controller {args.controller}, "
          f"space {plan.space_name} ({plan.n_decisions} decisions), model {plan.model}, "
          f"storage {storage.url}", file=sys.stderr)
    return _run(storage, name, args)


def run_resume(args: argparse.Namespace) -> int:
    from autopeft.storage import open_storage

    # resume never creates a database
    storage = open_storage(args.storage, create=False, study=args.name)
    info = storage.get_study(args.name)  # StudyNotFoundError lists the known ones
    if args.trials is not None:  # a usage error (64) before anything is written
        args_.check_trial_budget(args.name, args.trials, info.n_finished)
    print(f"resuming study {args.name} ({info.controller})", file=sys.stderr)
    return _run(storage, args.name, args, n_trials=args.trials)


def _run(storage, name: str, args: argparse.Namespace, n_trials: int | None = None) -> int:
    from autopeft.study import executor_factory, resume_study

    printer = ProgressPrinter(enabled=not args.quiet)
    runner = resume_study(
        storage, name, n_trials=n_trials, max_retries=args.max_retries, on_progress=printer,
        time_budget_s=args.budget,
        executor_factory=executor_factory(
            args.executor, workers=args.workers or 1, ray_address=args.ray_address,
            evaluator_factory=getattr(args, "evaluator_factory", None)))
    try:
        runner.run()
    except KeyboardInterrupt:
        printer.close()
        print(f"\ninterrupted: running trials were marked interrupted; continue with "
              f"`autopeft resume {name}`", file=sys.stderr)
        return 130
    except BaseException:
        printer.close()
        raise
    printer.close()
    print_leaderboard(storage, name, top=5)
    return 0
