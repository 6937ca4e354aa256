"""Creating a study and getting a runner for it: everything `search` and `resume` do.

    name = create_study(storage, "s", space="default.yaml", experiment="default.yaml",
                        controller="tpe", n_trials=20)        # plan_study + store
    runner = resume_study(storage, "s", executor_factory=executor_factory())
    runner.run()

`plan_study` (which `create_study` calls) checks every input (space, experiment,
controller preset, the data) and writes nothing; `create_study` then stores the study with
everything a resume needs: the space text, the experiment, the resolved controller preset
(its content, not the file name), the seed, the runs directory. `resume_study` never re-reads a space, experiment or preset
file: it only compares the space file's fingerprint to refuse a changed space.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from autopeft.exceptions import ConfigError, SpaceDriftError
from autopeft.study.runner import DEFAULT_RUNS_DIR, Progress, StudyContext, StudyRunner

logger = logging.getLogger(__name__)

# executor_factory(experiment dict, pruner or None) -> Executor
ExecutorFactory = Callable[[Mapping[str, Any], Any], Any]

PRESET_ATTR = "controller_preset"   # study attribute holding the resolved preset
RUNS_DIR_ATTR = "runs_dir"


# -- create ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StudyPlan:
    """A study checked in full and not yet stored (plan_study -> create_study)."""

    name: str
    space_name: str
    space_text: str
    space_fingerprint: str
    space_source: str
    n_decisions: int
    experiment: Mapping[str, Any]      # ExperimentConfig.to_dict(), seed = the study seed
    preset: Any                        # controllers.presets.Preset
    controller_ref: str                # as shown by `ls`: a preset name, or a file's path
    controller_settings: Mapping[str, Any]
    seed: int
    n_trials: int
    runs_dir: str
    notes: tuple[str, ...] = ()        # e.g. recipes the space cannot express

    @property
    def model(self) -> str:
        return str(self.experiment["model"])


def plan_study(name: str | None, *, space: Any, experiment: Any, controller: Any = "random",
               seed: int | None = None, n_trials: int,
               runs_dir: str | Path = DEFAULT_RUNS_DIR, check_data: bool = True,
               recipes: bool = True) -> StudyPlan:
    """Check every input of a new study; nothing is written.

    space: a SearchSpace loaded from a file, or a space file path / shipped name.
    experiment: an ExperimentConfig, or an experiment file path / shipped name.
    controller: a preset name, a preset file or a Preset.
    seed: the study seed, default the experiment's seed. The seed rule: the study seed
    drives everything. It is written into the stored experiment (`seed`), so the model
    head's initialisation (ExperimentConfig.seed) uses it, the controller is seeded with
    it, and trial k trains with trial_seed(seed, k).
    recipes: begin with the standard recipes the space can express
    (autopeft.controllers.recipes); stored in the controller settings, so a resume
    wraps the controller again. Recipes the space cannot express are listed in `notes`.
    check_data: read the dataset and make the splits now, so a missing column, a single
    class, empty texts or too few examples are an ExperimentError (exit 3) up front.
    """
    from autopeft.config import ExperimentConfig, load_experiment
    from autopeft.controllers import load_preset, make_controller
    from autopeft.controllers.presets import Preset
    from autopeft.models import model_info
    from autopeft.space import load_space

    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError("the number of trials must be at least 1", value=n_trials,
                          fix="pass --trials N with N >= 1")
    space = load_space(space) if isinstance(space, (str, Path)) else space
    cfg = experiment if isinstance(experiment, ExperimentConfig) else load_experiment(experiment)
    seed = cfg.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("the study seed must be a non-negative integer", value=seed,
                          fix="pass --seed N with N >= 0")
    cfg = dataclasses.replace(cfg, seed=seed)
    info = model_info(cfg.model)
    bound = space.bind(num_layers=info.num_layers, hidden_size=info.hidden_size)
    preset = controller if isinstance(controller, Preset) else load_preset(str(controller))
    ctrl = make_controller(preset, bound, seed=seed, recipes=recipes)  # validates settings
    notes = tuple(ctrl.notes(n_trials)) if hasattr(ctrl, "notes") else ()
    ref = preset.name if isinstance(controller, Preset) else str(controller)
    if Path(ref).is_file():  # a preset given as a file: shown by its absolute path
        ref = str(Path(ref).resolve())
    if check_data:
        from autopeft.taskdata import check_data as check

        for where, data in cfg.data_sections():  # every task of a multi-task experiment
            check(data, file=cfg.source, where=where)
    return StudyPlan(
        name=name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        space_name=space.name, space_text=_space_text(space),
        space_fingerprint=space.fingerprint, space_source=str(Path(space.source).resolve()),
        n_decisions=len(bound.decisions), experiment=cfg.to_dict(), preset=preset,
        controller_ref=ref,
        controller_settings=dict(ctrl.settings), seed=seed, n_trials=n_trials,
        runs_dir=str(Path(runs_dir).resolve()), notes=notes)


def create_study(storage: Any, name: str | None = None, *, plan: StudyPlan | None = None,
                 **inputs: Any) -> str:
    """Store a new study and return its name: `plan`, or plan_study(name, **inputs).

    Raises StudyExistsError when the name is taken; nothing is written then.
    """
    from autopeft.version import library_versions

    if plan is None:
        plan = plan_study(name, **inputs)
    elif inputs or name is not None:
        raise TypeError("give either a plan or the study's inputs, not both")
    storage.create_study(
        name=plan.name, space_text=plan.space_text, space_fingerprint=plan.space_fingerprint,
        space_source=plan.space_source, experiment=dict(plan.experiment),
        controller=plan.controller_ref,
        controller_settings=dict(plan.controller_settings), seed=plan.seed,
        n_trials=plan.n_trials, versions=library_versions())
    storage.set_study_attr(plan.name, PRESET_ATTR, preset_to_dict(plan.preset))
    storage.set_study_attr(plan.name, RUNS_DIR_ATTR, plan.runs_dir)
    return plan.name


def _is_file(source: Any) -> bool:
    return bool(source) and Path(str(source)).is_file()


def _space_text(space: Any) -> str:
    """The space's YAML, stored with the study so a resume never needs the file."""
    if not _is_file(space.source):
        raise ConfigError(f"the space {space.name!r} was not loaded from a file "
                          f"({space.source}), so its text cannot be stored with the study",
                          value=space.source, fix="pass the space file's path or name")
    return Path(space.source).read_text(encoding="utf-8")


def preset_to_dict(preset: Any) -> dict[str, Any]:
    """A Preset as stored with the study (what a preset file holds, plus its origin)."""
    return {"name": preset.name, "source": preset.source, "controller": preset.controller,
            "settings": dict(preset.settings), "pruner": preset.pruner,
            "description": preset.description}


def stored_preset(storage: Any, name: str) -> Any:
    """The controller preset the study was created with, validated again."""
    from autopeft.controllers.presets import load_preset, parse_preset

    data = storage.get_study_attrs(name).get(PRESET_ATTR)
    if data is None:  # a study stored before presets were kept: its controller reference
        info = storage.get_study(name)
        logger.warning("study %r has no stored controller preset; reading preset %r",
                       name, info.controller)
        return load_preset(info.controller)
    body = {k: data[k] for k in ("controller", "settings", "pruner", "description")
            if data.get(k) is not None}
    return parse_preset(body, name=data["name"], source=data.get("source"))


# -- resume ---------------------------------------------------------------------------------
def load_context(storage: Any, name: str, *, check_space_file: bool = True) -> StudyContext:
    """Rebuild a stored study's bound space and config; refuse a changed space file."""
    from autopeft.config import check_no_code_hooks
    from autopeft.models import model_info
    from autopeft.names import study_dir
    from autopeft.space import load_space, parse_space

    info = storage.get_study(name)
    check_no_code_hooks(info.experiment, f"<study {name}>")  # nothing imported from a row
    space = parse_space(info.space_text, info.space_source or f"<study {name}>")
    if check_space_file and info.space_source and Path(info.space_source).is_file():
        current = load_space(info.space_source)
        if current.fingerprint != info.space_fingerprint:
            raise SpaceDriftError(
                f"the space file {info.space_source} changed since study {name!r} was created "
                f"(fingerprint {info.space_fingerprint[:12]} -> {current.fingerprint[:12]}).\n"
                f"  fix: restore the file as it was, or start a new study with the changed "
                f"space: autopeft search --space {info.space_source} --study NEW_NAME")
    experiment = dict(info.experiment)
    model = model_info(experiment["model"])
    bound = space.bind(num_layers=model.num_layers, hidden_size=model.hidden_size)
    attrs = storage.get_study_attrs(name)
    return StudyContext(name=name, space=bound, experiment=experiment, seed=int(info.seed),
                        n_trials=int(info.n_trials),
                        runs_dir=study_dir(attrs.get(RUNS_DIR_ATTR, DEFAULT_RUNS_DIR), name))


def restore_controller(storage: Any, name: str, ctx: StudyContext) -> Any:
    """The study's controller in the state it had (the rule of controllers.base):
    the saved state, then the finished trials it was not told; without a saved state,
    rebuilt from the study's trials."""
    from autopeft.controllers import make_controller

    info = storage.get_study(name)
    controller = make_controller(stored_preset(storage, name), ctx.space, seed=ctx.seed,
                                 **dict(info.controller_settings or {}))
    state = storage.load_controller_state(name)
    records = storage.get_trials(name)
    if state is not None:
        controller.load_state_dict(state)
        controller.catch_up(records)
    elif records:
        controller.rebuild(records)
    return controller


def replay_pruner(storage: Any, name: str, preset: Any) -> Any:
    """The preset's pruner, replayed over the study's stored reports (None: no pruner)."""
    from autopeft.pruners import make_pruner

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


def resume_study(storage: Any, name: str, *, executor_factory: ExecutorFactory,
                 n_trials: int | None = None, max_retries: int = 2,
                 max_consecutive_failures: int = 5,
                 on_progress: Callable[[Progress], None] | None = None,
                 check_space_file: bool = True,
                 time_budget_s: float | None = None,
                 cpu_budget_s: float | None = None) -> StudyRunner:
    """A runner for a stored study (new or stopped), ready to `run()`.

    Checks first, then changes: an unknown study, a changed space file or a budget below
    the finished trials raise before anything is written (the trial budget included).
    n_trials raises (or keeps) the study's budget. The executor is built last, with
    `executor_factory(experiment, pruner)`; the runner shuts it down when it ends.
    time_budget_s: no trial starts after this many seconds of the run (running trials
    finish); the study is then "stopped" and a later resume continues it.
    cpu_budget_s: no trial starts once the study's finished trials used this many CPU
    seconds in all (Metrics.extra["cpu_seconds"], every run of the study counted).
    """
    ctx = load_context(storage, name, check_space_file=check_space_file)
    if n_trials is not None:
        finished = storage.get_study(name).n_finished
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1 \
                or n_trials < finished:
            raise ConfigError(f"a budget of {n_trials!r} trials is below the {finished} "
                              f"finished trial(s) of study {name!r}", value=n_trials,
                              fix=f"pass --trials N with N >= {max(1, finished)}")
    controller = restore_controller(storage, name, ctx)
    pruner = replay_pruner(storage, name, controller.preset)
    if n_trials is not None and n_trials != ctx.n_trials:
        storage.set_study_n_trials(name, n_trials)
        ctx = StudyContext(ctx.name, ctx.space, ctx.experiment, ctx.seed, n_trials,
                           ctx.runs_dir)
    executor = executor_factory(ctx.experiment, pruner)
    return StudyRunner(storage, ctx, controller, executor, max_retries=max_retries,
                       max_consecutive_failures=max_consecutive_failures,
                       on_progress=on_progress, time_budget_s=time_budget_s,
                       cpu_budget_s=cpu_budget_s)


# -- executors ------------------------------------------------------------------------------
def executor_factory(kind: str = "auto", *, workers: int = 1, ray_address: str | None = None,
                     evaluator: Any = None, evaluator_factory: Any = None) -> ExecutorFactory:
    """A factory for `resume_study`: serial in-process, or Ray (kind "auto": Ray when
    workers > 1 or an address is given). `evaluator` (serial only) is an Evaluator to use
    instead of the experiment's, e.g. a fake in tests; `evaluator_factory`
    (experiment -> Evaluator) does the same on every executor, Ray workers included."""
    def make(experiment: Mapping[str, Any], pruner: Any = None) -> Any:
        return make_executor(experiment, pruner, kind=kind, workers=workers,
                             ray_address=ray_address, evaluator=evaluator,
                             evaluator_factory=evaluator_factory)

    return make


def make_executor(experiment: Mapping[str, Any], pruner: Any = None, *, kind: str = "auto",
                  workers: int = 1, ray_address: str | None = None,
                  evaluator: Any = None, evaluator_factory: Any = None) -> Any:
    workers = workers or 1
    if kind == "auto":
        kind = "ray" if (workers > 1 or ray_address) else "serial"
    if kind == "serial":
        from autopeft.executors.reporting import PrunerReporter
        from autopeft.executors.serial import SerialExecutor

        return SerialExecutor(experiment, reporter=PrunerReporter(pruner), evaluator=evaluator,
                              evaluator_factory=evaluator_factory)
    if evaluator is not None:
        raise ConfigError("an evaluator object can only be given to the serial executor",
                          value=kind, fix="use kind='serial'")
    from autopeft.executors.ray_executor import RayExecutor

    res = experiment.get("resources", {}) or {}
    return RayExecutor(experiment, workers=workers, address=ray_address,
                       cpus_per_trial=res.get("cpus", 1), gpus_per_trial=res.get("gpus", 0),
                       pruner=pruner, evaluator_factory=evaluator_factory)
