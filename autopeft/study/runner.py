"""The study loop: the only place that joins controller, executor, reward and storage.

    controller.ask() -> Proposal -> storage.create_trial -> executor.submit(EvalRequest)
    executor.wait()  -> Outcome  -> reward -> storage.finish_trial -> controller.tell(record)

The failure policy and the study statuses are written in autopeft.study's docstring.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from autopeft.exceptions import AutoPeftError, FatalError
from autopeft.ranking import best as ranked_best
from autopeft.records import EvalRequest, Metrics, Proposal, TrialRecord, TrialState

logger = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = "autopeft_runs"


class StudyFailedError(FatalError):
    """The search ended without a single COMPLETE trial (every trial failed, or a fatal
    error stopped it): not a success. The study's status is "failed"."""


class ControllerProtocolError(AutoPeftError):
    """A controller broke the ask/tell contract (e.g. "wait" with nothing running)."""


@dataclasses.dataclass
class Progress:
    """A snapshot for progress displays."""

    n_trials: int
    finished: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best_reward: float | None = None
    best_trial: int | None = None
    elapsed: float = 0.0
    last_event: str = ""

    @property
    def eta_seconds(self) -> float | None:
        if self.finished == 0 or self.finished >= self.n_trials:
            return None
        return self.elapsed / self.finished * (self.n_trials - self.finished)


@dataclasses.dataclass
class StudyContext:
    """Everything a run of the loop needs that comes from the stored study."""

    name: str
    space: Any            # BoundSpace
    experiment: Mapping[str, Any]
    seed: int
    n_trials: int
    runs_dir: Path


def score(metrics: Metrics, experiment: Mapping[str, Any]) -> tuple[float, bool, list[str]]:
    """The reward of a trial from its stored metrics (pure; λ can change later)."""
    from autopeft.reward import score as reward_score

    result = reward_score(metrics, experiment)
    return result.reward, result.feasible, list(result.reasons)


class StudyRunner:
    """Runs one study to completion (or until stopped) with a given executor."""

    def __init__(self, storage: Any, ctx: StudyContext, controller: Any, executor: Any, *,
                 max_retries: int = 2, max_consecutive_failures: int = 5,
                 on_progress: Callable[[Progress], None] | None = None,
                 time_budget_s: float | None = None,
                 cpu_budget_s: float | None = None) -> None:
        for key, value in (("time_budget_s", time_budget_s), ("cpu_budget_s", cpu_budget_s)):
            if value is not None and not (value > 0):
                raise ValueError(f"{key} must be positive, got {value!r}")
        self.storage = storage
        # wall-clock budget of this run: no trial starts after it (running ones finish);
        # the study then ends "stopped" and `resume` continues it with a budget of its own
        self.time_budget_s = time_budget_s
        # CPU budget of the whole study (every run of it): no trial starts once its finished
        # trials' CPU seconds (trial_cpu_seconds) add up to it. CPU, not wall time, so a
        # busy shared machine does not shrink the search; a resume with the same budget
        # starts nothing once it is spent
        self.cpu_budget_s = cpu_budget_s
        self._no_cpu_reported: set[int] = set()
        self.ctx = ctx
        self.controller = controller
        self.executor = executor
        self.max_retries = max_retries
        self.max_consecutive_failures = max_consecutive_failures
        self.on_progress = on_progress or (lambda p: None)
        self._queue: list[TrialRecord] = []   # created, waiting for a free worker
        self._live: dict[int, TrialRecord] = {}  # submitted, waiting for an outcome
        self._attempts: dict[int, int] = {}
        self._consecutive_failures = 0
        self._controller_done = False
        self._out_of_time = False
        self._stop_reason = ""
        self._t0 = time.monotonic()
        self.progress = Progress(n_trials=ctx.n_trials)

    # -- the loop -------------------------------------------------------------------
    def run(self) -> Progress:
        """Run until the budget is reached or the controller is done; shuts the executor
        down at the end. Raises StudyFailedError when no trial completed."""
        name = self.ctx.name
        try:
            self.storage.set_study_status(name, "running")
            requeued = self.storage.requeue_interrupted(name)
            if requeued:
                logger.info("re-running %d interrupted trial(s): %s", len(requeued), requeued)
            self._queue = self.storage.get_trials(name, states=[TrialState.PENDING])
            self._refresh_progress("resumed" if requeued else "started")
            while True:
                self._fill()
                if not self._live:  # _fill submits all it may: nothing live, nothing left
                    break
                for outcome in self.executor.wait(timeout=1.0):
                    self._handle(outcome)
                self._refresh_progress()
            if self.progress.complete == 0:
                self.storage.set_study_status(name, "failed")
                self._refresh_progress("failed")
                raise StudyFailedError(
                    f"study {name!r} has no completed trial ({self.progress.failed} failed, "
                    f"{self.progress.pruned} pruned): the search did not succeed.\n  fix: "
                    f"see the errors with `autopeft show {name}`, fix the setup, then "
                    f"`autopeft resume {name} --trials N` with N above "
                    f"{self.progress.finished}")
        except (FatalError, ControllerProtocolError):  # persisted; the search stops
            self._interrupt("failed")
            raise
        except BaseException:  # Ctrl-C, a storage error, a bug: resume continues
            self._interrupt("interrupted")
            raise
        finally:
            self.executor.shutdown()
        status = "finished" if self.progress.finished >= self.ctx.n_trials else "stopped"
        self.storage.set_study_status(name, status)
        self._refresh_progress(f"stopped: {self._stop_reason}" if self._out_of_time
                               and status == "stopped" else status)
        return self.progress

    def _fill(self) -> None:
        """Submit queued trials, then new ones, while workers are free and the budget
        allows: finished + live never exceeds n_trials (exactly-N), queued re-runs of
        interrupted trials included; those over the budget stay PENDING."""
        while self.executor.in_flight < self.executor.capacity:
            if self._finished() + len(self._live) >= self.ctx.n_trials:
                return
            if self._budget_spent():
                return
            if not self._queue:
                if self._controller_done:
                    return
                proposal = self.controller.ask()
                if proposal is None:
                    self._controller_done = True
                    return
                if proposal == "wait":
                    if not self._live:
                        raise ControllerProtocolError(
                            f"controller {getattr(self.controller, 'name', '?')!r} answered "
                            f"'wait' with no trial running: it waits for results that can "
                            f"never come. This is a bug in the controller (see the contract "
                            f"in autopeft.controllers.base).\n  fix: report it to the "
                            f"controller's author; the trials so far are kept")
                    return
                record = self._create(proposal)
                self._queue.append(record)
            record = self._queue.pop(0)
            self._submit(record)

    def _budget_spent(self) -> bool:
        """Is the wall-clock or the CPU budget spent? (logged once, when it first is)"""
        if self._out_of_time:
            return True
        why = detail = ""
        if self.time_budget_s is not None and \
                time.monotonic() - self._t0 >= self.time_budget_s:
            why, detail = "time budget spent", f"{self.time_budget_s:.0f} s"
        elif self.cpu_budget_s is not None:
            spent = self.cpu_spent()
            if spent >= self.cpu_budget_s:
                why = "CPU budget spent"
                detail = f"{spent:.1f} of {self.cpu_budget_s:.1f} CPU s"
        if why:
            logger.info("%s (%s): no new trial starts", why, detail)
            self._out_of_time, self._stop_reason = True, why
        return self._out_of_time

    def cpu_spent(self) -> float:
        """CPU seconds of the study's finished trials, every run of it."""
        total = 0.0
        for t in self.storage.get_trials(self.ctx.name):
            if t.metrics is None:
                continue
            cpu = trial_cpu_seconds(t.metrics)
            if cpu is None and t.number not in self._no_cpu_reported:
                self._no_cpu_reported.add(t.number)
                logger.warning("trial %d reports no cpu_seconds: the CPU budget counts it "
                               "as 0", t.number)
            total += cpu or 0.0
        return total

    def _finished(self) -> int:
        return len(self.storage.get_trials(self.ctx.name, states=[
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED]))

    def _create(self, proposal: Proposal) -> TrialRecord:
        self.ctx.space.validate(proposal.assignment)
        candidate = self.ctx.space.to_candidate(proposal.assignment)
        record = self.storage.create_trial(
            self.ctx.name, dict(proposal.assignment), candidate.to_dict(),
            proposal.warm_start_from, dict(proposal.meta))
        # saved after the trial exists, so a crash in between only re-asks
        self.storage.save_controller_state(self.ctx.name, self.controller.state_dict())
        return record

    def _submit(self, record: TrialRecord, attempt: int | None = None) -> None:
        attempt = self._attempts.get(record.number, 0) if attempt is None else attempt
        warm_path = None
        if record.warm_start_from is not None:
            parent = self.storage.get_trial(self.ctx.name, record.warm_start_from)
            if parent.metrics is not None and parent.metrics.checkpoint:
                warm_path = parent.metrics.checkpoint
        request = EvalRequest(
            study=self.ctx.name, trial_number=record.number, candidate=record.candidate,
            experiment=self.ctx.experiment, seed=trial_seed(self.ctx.seed, record.number),
            attempt=attempt, warm_start_path=warm_path,
            checkpoint_dir=str(self.ctx.runs_dir / f"trial_{record.number:05d}"),
            start_step=_start_step(self.storage, self.ctx.name, record),
        )
        self.storage.set_trial_running(self.ctx.name, record.number,
                                       getattr(self.executor, "worker_id", None), attempt)
        self.executor.submit(request)
        self._live[record.number] = record

    def _handle(self, outcome: Any) -> None:
        name = self.ctx.name
        record = self._live.pop(outcome.trial_number)
        if outcome.error_kind == "crash" and outcome.attempt < self.max_retries:
            logger.warning("trial %d crashed on attempt %d, retrying: %s", record.number,
                           outcome.attempt, (outcome.error or "").splitlines()[0:1])
            self._attempts[record.number] = outcome.attempt + 1
            self._queue.insert(0, record)
            return
        if outcome.metrics is not None:
            m: Metrics = outcome.metrics
            for step, value in m.intermediate:
                self.storage.add_intermediate(name, record.number, step, value)
            reward, feasible, reasons = score(m, self.ctx.experiment)
            state = TrialState.PRUNED if m.pruned else TrialState.COMPLETE
            self.storage.finish_trial(name, record.number, state, m, reward, feasible,
                                      "; ".join(reasons) or None, worker=outcome.worker)
            if m.checkpoint:
                self.storage.add_artifact(name, record.number, "checkpoint", m.checkpoint)
            self._consecutive_failures = 0
        else:
            self.storage.finish_trial(name, record.number, TrialState.FAILED, None, None,
                                      None, outcome.error, worker=outcome.worker)
            self._consecutive_failures += 1
        finished = self.storage.get_trial(name, record.number)
        self.controller.tell(finished)
        self.storage.save_controller_state(name, self.controller.state_dict())
        self._refresh_progress(f"trial {record.number} {finished.state.value}")
        if outcome.error_kind == "fatal":
            raise FatalError(f"trial {record.number} hit a fatal error; the search stops: "
                             f"{outcome.error}")
        if self._consecutive_failures >= self.max_consecutive_failures:
            raise FatalError(
                f"{self._consecutive_failures} trials failed in a row; the last error was: "
                f"{(outcome.error or '').strip()[:500]}\n  fix: check the experiment "
                f"config and `autopeft show {name}` for the errors, then `autopeft resume {name}`")

    def _interrupt(self, status: str) -> None:
        """Mark live and queued trials interrupted (re-run on resume), set the status;
        never loses a finished trial."""
        numbers = sorted(set(self._live) | {r.number for r in self._queue})
        try:
            if numbers:
                self.storage.mark_interrupted(self.ctx.name, numbers)
            self.storage.set_study_status(self.ctx.name, status)
        finally:
            self._live.clear()
            self._queue.clear()

    def _refresh_progress(self, event: str = "") -> None:
        trials = self.storage.get_trials(self.ctx.name)
        p = self.progress
        p.complete = sum(t.state == TrialState.COMPLETE for t in trials)
        p.pruned = sum(t.state == TrialState.PRUNED for t in trials)
        p.failed = sum(t.state == TrialState.FAILED for t in trials)
        p.finished = p.complete + p.pruned + p.failed
        p.running = len(self._live)
        best = best_trial(trials)
        p.best_reward = None if best is None else best.reward
        p.best_trial = None if best is None else best.number
        p.elapsed = time.monotonic() - self._t0
        if event:
            p.last_event = event
        self.on_progress(p)


def best_trial(trials: list[TrialRecord]) -> TrialRecord | None:
    """The best trial by the one rule of autopeft.ranking (what export offers first)."""
    return ranked_best(trials)


def trial_cpu_seconds(metrics: Metrics) -> float | None:
    """The CPU seconds a trial used (ProxyEvaluator measures them around the trial, set-up
    excluded, into Metrics.extra["cpu_seconds"]); None when its evaluator did not say."""
    value = (metrics.extra or {}).get("cpu_seconds")
    return float(value) if isinstance(value, (int, float)) else None


def trial_seed(study_seed: int, number: int) -> int:
    """Each trial's own seed, derived (not drawn) so retries and resumes reuse it."""
    return (int(study_seed) * 1_000_003 + int(number)) % (2**31 - 1)


def _start_step(storage: Any, name: str, record: TrialRecord) -> int:
    if record.warm_start_from is None:
        return 0
    parent = storage.get_trial(name, record.warm_start_from)
    if parent.metrics is None:
        return 0
    # the parent's own reports are numbered from its start: its last one is the whole
    # chain's step count (a chain of warm starts keeps counting, as PBT's rounds do)
    steps = [int(at) for at, _ in parent.metrics.intermediate or ()]
    return max(steps + [int(parent.metrics.steps)])
