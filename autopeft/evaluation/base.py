"""The Evaluator interface and the Reporter it talks to while training.

An evaluator lives inside a worker (in-process for the serial executor, a Ray actor
otherwise). It is created once per worker from the experiment config and serves many
trials: the base model and the tokenised data are loaded once, never per trial.
"""
from __future__ import annotations

import abc
import importlib
from typing import Any, Callable, Mapping

from autopeft.records import Cost, EvalRequest, Metrics


class Reporter(abc.ABC):
    """Receives intermediate validation metrics during a trial.

    `report` returns True to continue and False to stop the trial now (pruned): the
    evaluator then returns Metrics with pruned=True and the last reported metric.
    """

    @abc.abstractmethod
    def report(self, trial_number: int, step: int, value: float) -> bool: ...

    def note_cost(self, trial_number: int, cost: Cost) -> None:  # noqa: B027 - optional hook
        """Optional: an evaluator that knows the candidate's cost before training passes it
        here, so a cost-aware pruner can use params_ratio (see executors/reporting.py)."""


class NullReporter(Reporter):
    """Never stops a trial."""

    def report(self, trial_number: int, step: int, value: float) -> bool:
        return True


class Evaluator(abc.ABC):
    """Trains one candidate per call.

    Raises autopeft.exceptions.TrialFailedError when the candidate itself fails (NaN/inf
    loss, out of memory, a build the model cannot take): no retry.
    Raises autopeft.exceptions.FatalError when the setup is broken (model or data
    missing): the study stops.
    """

    @abc.abstractmethod
    def evaluate(self, request: EvalRequest, reporter: Reporter) -> Metrics: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release memory; called when the worker shuts down."""


# The evaluators by name, as "module:factory" strings written here in code (never read
# from a YAML file or a database row): this module imports none of them, so the proxy
# trainer (which imports this module for Evaluator and Reporter) is loaded only when it
# is built, and no import loop exists. factory(experiment) -> Evaluator.
EVALUATORS: dict[str, str | Callable[[Mapping[str, Any]], Evaluator]] = {
    "proxy": "autopeft.evaluation.proxy:ProxyEvaluator",
}
DEFAULT_EVALUATOR = "proxy"


def register_evaluator(name: str,
                       factory: str | Callable[[Mapping[str, Any]], Evaluator]) -> None:
    """Add an evaluator under `name` ("module:factory" or a callable), from Python."""
    EVALUATORS[name] = factory


def _factory(target: str | Callable[..., Evaluator]) -> Callable[..., Evaluator]:
    if callable(target):
        return target
    module_name, _, attr = str(target).partition(":")
    return getattr(importlib.import_module(module_name), attr)


def make_evaluator(experiment: Mapping[str, Any],
                   factory: Callable[[Mapping[str, Any]], Evaluator] | None = None,
                   name: str = DEFAULT_EVALUATOR) -> Evaluator:
    """The evaluator for an experiment dict (ExperimentConfig.to_dict()).

    `factory` (experiment -> Evaluator) is how tests and library users bring their own
    evaluator; it is passed from Python only. The default is the registered `name`, the
    proxy-task trainer. An experiment that names code to import (`evaluator:
    module:factory`, from a file or a stored study) is refused: nothing is imported
    because data says so.
    """
    if factory is not None:
        return factory(experiment)
    check_no_code_reference(experiment)
    if name not in EVALUATORS:
        raise KeyError(f"no evaluator {name!r}; registered: {sorted(EVALUATORS)}")
    return _factory(EVALUATORS[name])(experiment)


def check_no_code_reference(experiment: Mapping[str, Any]) -> None:
    """Refuse an experiment that names an evaluator to import (older autopeft stored one)."""
    from autopeft.config import check_no_code_hooks
    from autopeft.exceptions import ExperimentError, FatalError

    try:
        check_no_code_hooks(experiment)
    except ExperimentError as exc:  # in a worker: the setup is broken, stop the search
        raise FatalError(str(exc)) from None
