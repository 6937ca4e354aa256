"""The in-process executor: one trial at a time, in the driver's own process.

For debugging, unit tests and machines where Ray is unwanted. It keeps one evaluator
for its whole life (the base model and the tokenised data load once), exactly like a
Ray worker does, so it gives the same results as the Ray executor for the same seed.
"""
from __future__ import annotations

import collections
import logging
import os
import time
import traceback
from typing import Any, Mapping

from autopeft.evaluation.base import Evaluator, NullReporter, Reporter, make_evaluator
from autopeft.exceptions import FatalError, TrialFailedError
from autopeft.executors.base import Executor, Outcome
from autopeft.records import EvalRequest

logger = logging.getLogger(__name__)


class SerialExecutor(Executor):
    def __init__(self, experiment: Mapping[str, Any], *, reporter: Reporter | None = None,
                 evaluator: Evaluator | None = None,
                 evaluator_factory: Any = None) -> None:
        self._experiment = dict(experiment)
        self._evaluator = evaluator
        self._factory = evaluator_factory  # Python-level injection (tests); None: proxy
        self._reporter = reporter or NullReporter()
        self._queue: collections.deque[EvalRequest] = collections.deque()
        self.worker_id = f"serial:{os.getpid()}"

    @property
    def capacity(self) -> int:
        return 1

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, request: EvalRequest) -> None:
        self._queue.append(request)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self._queue:
            return []
        from autopeft.executors.reporting import attach_reports

        request = self._queue.popleft()
        outcome = run_request(self._get_evaluator, request, self._reporter, self.worker_id)
        return [attach_reports(outcome, self._reporter)]

    def _get_evaluator(self) -> Evaluator:
        if self._evaluator is None:
            self._evaluator = make_evaluator(self._experiment, self._factory)
        return self._evaluator

    def shutdown(self) -> None:
        self._queue.clear()
        if self._evaluator is not None:
            self._evaluator.close()
            self._evaluator = None


def run_request(get_evaluator, request: EvalRequest, reporter: Reporter,
                worker: str) -> Outcome:
    """Evaluate one request and map every way it can end onto an Outcome.

    Shared by every executor's worker so the failure policy is written once.
    """
    start = time.perf_counter()

    def outcome(**kw: Any) -> Outcome:
        return Outcome(trial_number=request.trial_number, attempt=request.attempt,
                       worker=worker, wall_seconds=time.perf_counter() - start, **kw)

    try:
        metrics = get_evaluator().evaluate(request, reporter)
    except TrialFailedError as exc:
        return outcome(error=str(exc), error_kind="trial_failed")
    except FatalError as exc:
        return outcome(error=str(exc), error_kind="fatal")
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - anything else is retried by the study
        logger.warning("trial %d crashed: %s", request.trial_number, exc)
        return outcome(error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}",
                       error_kind="crash")
    return outcome(metrics=metrics)
