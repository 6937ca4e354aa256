"""The study: the only place that joins controller, executor, reward and storage.

    from autopeft.storage import open_storage
    from autopeft.study import create_study, executor_factory, resume_study

    storage = open_storage("sqlite:///autopeft.db")
    create_study(storage, "s", space="default.yaml", experiment="default.yaml",
                 controller="tpe", n_trials=20)                  # checks, then writes
    progress = resume_study(storage, "s", executor_factory=executor_factory()).run()
    ...                                                          # Ctrl-C, kill -9, ...
    resume_study(storage, "s", executor_factory=executor_factory(), n_trials=30).run()

Lifecycle and failure policy (written once, here and in runner.py):

- `create_study` creates, `resume_study` continues (a new study is continued from zero
  trials); neither does the other's job. Every input is checked before the first write:
  space, experiment, controller preset and the data (columns, classes, empty texts,
  enough examples for the splits). The resolved preset is stored in the study, so a
  resume never reads a preset file again.
- Seeds: the study seed (--seed, default the experiment's `seed`) drives everything: it
  is stored as the experiment's seed (the model head's init), seeds the controller, and
  trial k trains with `trial_seed(seed, k)`.
- A trial is written to storage (PENDING, then RUNNING) before it is submitted, and its
  outcome is written before anything is re-raised. So a driver killed at any moment loses
  nothing: on resume, trials found PENDING/RUNNING/INTERRUPTED were interrupted and are
  re-run with their stored assignment; finished trials are never re-run or duplicated.
- Exactly N: finished + live trials never exceed n_trials, re-runs of interrupted
  trials included (those over a lowered budget stay PENDING for a later resume).
- Outcome kinds: success -> COMPLETE (or PRUNED); "trial_failed" -> FAILED, no retry;
  "fatal" -> FAILED, then the search stops with FatalError; "crash" -> retried up to
  `max_retries` times, then FAILED. After `max_consecutive_failures` failures in a row
  the search stops with FatalError: something is wrong with the setup, not the candidates.
- Statuses: "running" while the loop runs; "finished" when n_trials trials finished and
  at least one COMPLETE; "stopped" when the controller ended early; "failed" when a
  FatalError or a controller bug stopped it, or when it ended with no COMPLETE trial
  (then StudyFailedError is raised: a search with no result is not a success);
  "interrupted" after Ctrl-C or any other error (resume continues it).
- A refused resume changes nothing: the space fingerprint and the new budget are checked
  before the budget is written.
- The controller's state is saved after every ask and every tell; on resume it is
  restored by the rule of autopeft.controllers.base, and the preset's pruner is replayed
  over the stored intermediate reports.
- "Best" is autopeft.ranking's rule (the best feasible COMPLETE trial).
"""
from autopeft.study.lifecycle import (
    ExecutorFactory,
    StudyPlan,
    create_study,
    executor_factory,
    load_context,
    make_executor,
    plan_study,
    replay_pruner,
    restore_controller,
    resume_study,
    stored_preset,
)
from autopeft.study.runner import (
    DEFAULT_RUNS_DIR,
    ControllerProtocolError,
    Progress,
    StudyContext,
    StudyFailedError,
    StudyRunner,
    best_trial,
    score,
    trial_seed,
)

__all__ = [
    "DEFAULT_RUNS_DIR",
    "ControllerProtocolError",
    "ExecutorFactory",
    "Progress",
    "StudyContext",
    "StudyFailedError",
    "StudyPlan",
    "StudyRunner",
    "best_trial",
    "create_study",
    "executor_factory",
    "load_context",
    "make_executor",
    "plan_study",
    "replay_pruner",
    "restore_controller",
    "resume_study",
    "score",
    "stored_preset",
    "trial_seed",
]
