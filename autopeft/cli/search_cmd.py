"""`autopeft search` creates a study and runs it; `autopeft resume NAME` continues one."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from autopeft.cli import args as args_
from autopeft.cli.output import ProgressPrinter, print_leaderboard

DEFAULT_CONTROLLER = "random"
DEFAULT_EXPERIMENT = "default.yaml"
DEFAULT_TRIALS = 10


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
    from autopeft.config import load_experiment
    from autopeft.controllers import make_controller
    from autopeft.exceptions import ConfigError
    from autopeft.models import model_info
    from autopeft.space import load_space
    from autopeft.storage import open_storage
    from autopeft.version import library_versions

    if args.trials < 1:
        raise ConfigError("--trials must be at least 1", value=args.trials,
                          fix="pass --trials N with N >= 1")
    # Validate everything before anything is written.
    space = load_space(args.space)
    experiment = load_experiment(args.experiment)
    seed = experiment.seed if args.seed is None else args.seed
    info = model_info(experiment.model)
    bound = space.bind(num_layers=info.num_layers, hidden_size=info.hidden_size)
    controller = make_controller(args.controller, bound, seed=seed)
    # a preset given as a file is stored by absolute path, so resume works from anywhere
    controller_ref = (str(Path(args.controller).resolve()) if Path(args.controller).is_file()
                      else args.controller)
    storage = open_storage(args.storage)
    name = args.study or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    space_text = Path(space.source).read_text(encoding="utf-8")
    storage.create_study(
        name=name, space_text=space_text, space_fingerprint=space.fingerprint,
        space_source=str(Path(space.source).resolve()),
        experiment=experiment.to_dict(), controller=controller_ref,
        controller_settings=dict(controller.settings), seed=seed,
        n_trials=args.trials, versions=library_versions(),
    )
    storage.set_study_attr(name, "runs_dir", str(Path(args.runs_dir).resolve()))
    print(f"study {name}: {args.trials} trials, controller {args.controller}, "
          f"space {space.name} ({len(bound.decisions)} decisions), model {experiment.model}, "
          f"storage {storage.url}", file=sys.stderr)
    return _run(storage, name, args, controller)


def run_resume(args: argparse.Namespace) -> int:
    from autopeft.storage import open_storage

    # resume never creates a database
    storage = open_storage(args.storage, create=False, study=args.name)
    info = storage.get_study(args.name)  # StudyNotFoundError lists the known ones
    if args.trials is not None:
        args_.check_trial_budget(args.name, args.trials, info.n_finished)
        storage.set_study_n_trials(args.name, args.trials)
    print(f"resuming study {args.name} ({info.controller})", file=sys.stderr)
    return _run(storage, args.name, args, None)


def _run(storage, name: str, args: argparse.Namespace, controller) -> int:
    from autopeft.controllers import make_controller
    from autopeft.study import StudyRunner, load_context

    ctx = load_context(storage, name)
    info = storage.get_study(name)
    if controller is None:
        controller = make_controller(info.controller, ctx.space, seed=ctx.seed,
                                     **dict(info.controller_settings or {}))
        # The resume rule of autopeft.controllers.base: saved state, then catch up on
        # trials it has not been told; without a saved state, rebuild from the trials.
        state = storage.load_controller_state(name)
        records = storage.get_trials(name)
        if state is not None:
            controller.load_state_dict(state)
            controller.catch_up(records)
        else:
            controller.rebuild(records)
    pruner = _pruner_for(storage, name, controller)
    executor = make_executor(ctx.experiment, args, pruner)
    printer = ProgressPrinter(enabled=not args.quiet)
    runner = StudyRunner(storage, ctx, controller, executor, max_retries=args.max_retries,
                         on_progress=printer)
    try:
        runner.run()
    except KeyboardInterrupt:
        printer.close()
        print(f"\ninterrupted: running trials were marked interrupted; continue with "
              f"`autopeft resume {name}`", file=sys.stderr)
        return 130
    finally:
        executor.shutdown()
    printer.close()
    print_leaderboard(storage, name, top=5)
    return 0


def _pruner_for(storage, name: str, controller):
    """The controller preset's pruner, replayed over the study's stored reports on resume."""
    from autopeft.pruners import make_pruner

    preset = getattr(controller, "preset", None)
    pruner = make_pruner(getattr(preset, "pruner", None))
    if pruner is None:
        return None
    ratios = {t.number: t.metrics.cost.params_ratio for t in storage.get_trials(name)
              if t.metrics is not None}
    reports = storage.get_all_intermediates(name)
    pruner.rebuild((number, step, value, ratios.get(number))
                   for number in sorted(reports) for step, value in reports[number]
                   if value is not None)
    return pruner


def make_executor(experiment, args, pruner=None):
    workers = args.workers or 1
    kind = args.executor
    if kind == "auto":
        kind = "ray" if (workers > 1 or args.ray_address) else "serial"
    if kind == "serial":
        from autopeft.executors.serial import SerialExecutor

        from autopeft.executors.reporting import PrunerReporter

        return SerialExecutor(experiment, reporter=PrunerReporter(pruner),
                              evaluator_factory=getattr(args, "evaluator_factory", None))
    from autopeft.executors.ray_executor import RayExecutor

    res = experiment.get("resources", {}) or {}
    return RayExecutor(experiment, workers=workers, address=args.ray_address,
                       cpus_per_trial=res.get("cpus", 1), gpus_per_trial=res.get("gpus", 0),
                       pruner=pruner, evaluator_factory=getattr(args, "evaluator_factory", None))
