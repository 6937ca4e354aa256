"""The Ray actors behind RayExecutor: trial workers and the pruner host.

Kept apart from the executor (the driver side) so each file holds one concept. Workers
import this module by name when Ray starts an actor, so it must stay importable with
only autopeft and ray.
"""
from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any, Mapping

from autopeft._imports import require
from autopeft.evaluation.base import make_evaluator
from autopeft.exceptions import FatalError
from autopeft.executors.base import Outcome
from autopeft.executors.reporting import PrunerReporter, attach_reports, pruner_call
from autopeft.executors.serial import run_request
from autopeft.records import EvalRequest

ray = require("ray")

logger = logging.getLogger(__name__)

NODE_ID_CHARS = 12


def _limit_threads(cpus: float) -> None:
    """Make torch use as many threads as the worker has CPUs (only if torch is loaded:
    an evaluator that never imports torch should not pay for importing it here)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        threads = max(1, int(cpus))
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


class RemotePruner:
    """Worker-side stand-in for the pruner: `should_stop` asks the pruner actor.

    If the pruner actor is gone the trial goes on (a pruner is an optimisation; losing it
    must not fail trials).
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._warned = False

    def should_stop(self, trial_number: int, step: int, value: float, *,
                    params_ratio: float | None = None) -> bool:
        try:
            return bool(ray.get(self._handle.should_stop.remote(
                trial_number, step, value, params_ratio)))
        except ray.exceptions.RayActorError as exc:
            if not self._warned:
                logger.warning("pruner actor unreachable, trials run to the end: %s", exc)
                self._warned = True
            return False


class PrunerHost:
    """The Ray actor that holds the study's one pruner."""

    def __init__(self, pruner: Any) -> None:
        self._pruner = pruner

    def should_stop(self, trial_number: int, step: int, value: float,
                    params_ratio: float | None) -> bool:
        return bool(self._pruner.should_stop(trial_number, step, value,
                                             params_ratio=params_ratio))

    def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        return pruner_call(self._pruner, method, args, kwargs)


class TrialWorker:
    """The Ray actor: one evaluator for its whole life, one trial at a time.

    A failure to create the evaluator is kept, not raised: raising would kill the actor
    and the executor would replace it in a loop. Instead every trial sent to it comes back
    with that error ("fatal" for FatalError, else "crash"), through the normal path.
    """

    def __init__(self, experiment: Mapping[str, Any], cpus: float, pruner: Any,
                 evaluator_factory: Any = None) -> None:
        ctx = ray.get_runtime_context()
        self._node_id = ctx.get_node_id()
        self._pid = os.getpid()
        self.worker_id = f"ray:{self._node_id[:NODE_ID_CHARS]}:{self._pid}"
        self._cpus = cpus
        self._reporter = PrunerReporter(RemotePruner(pruner) if pruner is not None else None)
        self._evaluator = None
        self._init_error: tuple[str, str] | None = None
        try:
            self._evaluator = make_evaluator(experiment, evaluator_factory)
        except FatalError as exc:
            self._init_error = ("fatal", f"creating the evaluator failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported through every trial's Outcome
            self._init_error = ("crash", f"creating the evaluator failed: "
                                f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
        _limit_threads(cpus)

    def ready(self) -> dict[str, Any]:
        return {"worker": self.worker_id, "pid": self._pid, "node_id": self._node_id,
                "init_error": self._init_error[1] if self._init_error else None}

    def evaluate(self, request: EvalRequest) -> Outcome:
        if self._init_error is not None:
            kind, text = self._init_error
            return Outcome(trial_number=request.trial_number, attempt=request.attempt,
                           error=text, error_kind=kind, worker=self.worker_id)
        _limit_threads(self._cpus)
        outcome = run_request(lambda: self._evaluator, request, self._reporter,
                              self.worker_id)
        return attach_reports(outcome, self._reporter)

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()
            self._evaluator = None
