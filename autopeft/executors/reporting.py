"""The Reporter that lets a pruner stop a trial while it trains, for every executor.

An evaluator calls `reporter.report(trial_number, step, value)` after each validation
during training; a False answer means "stop now" and the evaluator returns Metrics with
pruned=True. `PrunerReporter` answers by asking a pruner object:

    pruner.should_stop(trial_number, step, value, *, params_ratio=None) -> bool

- The serial executor gives its evaluator `PrunerReporter(pruner)`: the pruner is called
  directly, in the driver's process.
- The Ray executor keeps the one pruner inside a small Ray actor (so every worker sees the
  same pruner state: a median rule needs all trials' reports), and each worker's
  PrunerReporter holds a proxy whose `should_stop` is a remote call to that actor.

Either way the reporter also remembers each trial's reports, so `attach_reports` can put
them on the Outcome's Metrics when an evaluator did not fill `Metrics.intermediate`
itself: the study stores intermediate reports from the Metrics, never from the workers.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
from typing import Any, Protocol

from autopeft.evaluation.base import Reporter
from autopeft.executors.base import Outcome
from autopeft.records import Cost

logger = logging.getLogger(__name__)


class Pruner(Protocol):
    """What a reporter needs from a pruner (autopeft.pruners implements it)."""

    def should_stop(self, trial_number: int, step: int, value: float, *,
                    params_ratio: float | None = None) -> bool: ...


class PrunerReporter(Reporter):
    """Records every report and asks `pruner` (if any) whether the trial should stop.

    One instance serves many trials (a worker keeps it for its life); per-trial data is
    keyed by trial number and dropped by `take_reports`. Thread-safe, because an
    evaluator may report from a training thread.
    """

    def __init__(self, pruner: Pruner | None = None) -> None:
        self.pruner = pruner
        self._lock = threading.Lock()
        self._reports: dict[int, list[tuple[int, float]]] = {}
        self._params_ratio: dict[int, float] = {}
        self._stopped: set[int] = set()

    def note_cost(self, trial_number: int, cost: Cost) -> None:
        """Remember the candidate's params_ratio so a cost-aware pruner can weigh it."""
        with self._lock:
            self._params_ratio[trial_number] = float(cost.params_ratio)

    def report(self, trial_number: int, step: int, value: float) -> bool:
        step, value = int(step), float(value)
        with self._lock:
            self._reports.setdefault(trial_number, []).append((step, value))
            ratio = self._params_ratio.get(trial_number)
        if self.pruner is None:
            return True
        if math.isnan(value):
            # a NaN is the evaluator's business (TrialFailedError); a pruner comparing
            # against it would give an arbitrary answer
            return True
        stop = bool(self.pruner.should_stop(trial_number, step, value, params_ratio=ratio))
        if stop:
            logger.info("pruner stops trial %d at step %d (value %.4g)", trial_number, step,
                        value)
            with self._lock:
                self._stopped.add(trial_number)
        return not stop

    def stopped(self, trial_number: int) -> bool:
        """Whether the pruner said stop for this trial (until `take_reports`)."""
        with self._lock:
            return trial_number in self._stopped

    def take_reports(self, trial_number: int) -> tuple[tuple[int, float], ...]:
        """This trial's reports in order; forgets the trial (call once, at its end)."""
        with self._lock:
            self._params_ratio.pop(trial_number, None)
            self._stopped.discard(trial_number)
            return tuple(self._reports.pop(trial_number, ()))


def attach_reports(outcome: Outcome, reporter: Reporter) -> Outcome:
    """The outcome with the trial's reports on its Metrics when the evaluator left them out.

    Always forgets the trial's reports in `reporter` (a PrunerReporter), so a retried
    trial starts clean. An evaluator's own `Metrics.intermediate` wins when set.
    """
    if not isinstance(reporter, PrunerReporter):
        return outcome
    reports = reporter.take_reports(outcome.trial_number)
    metrics = outcome.metrics
    if metrics is None or metrics.intermediate or not reports:
        return outcome
    return dataclasses.replace(outcome,
                               metrics=dataclasses.replace(metrics, intermediate=reports))


def pruner_call(pruner: Any, method: str, args: tuple = (), kwargs: dict | None = None) -> Any:
    """Call a public method of a pruner by name (the Ray pruner actor's one entry point)."""
    if method.startswith("_"):
        raise AttributeError(f"refusing to call private pruner method {method!r}")
    return getattr(pruner, method)(*args, **(kwargs or {}))
