"""The study loop: the only place that joins controller, executor, reward and storage.

    controller.ask() -> Proposal -> storage.create_trial -> executor.submit(EvalRequest)
    executor.wait()  -> Outcome  -> reward -> storage.finish_trial -> controller.tell(record)

Lifecycle and failure policy (written once, here):
- `create_study` creates, `resume_study` continues; neither does the other's job.
- A trial is written to storage (PENDING, then RUNNING) before it is submitted, and its
  outcome is written before anything is re-raised. So a driver killed at any moment loses
  nothing: on resume, trials found PENDING/RUNNING/INTERRUPTED were interrupted and are
  re-run with their stored assignment; finished trials are never re-run or duplicated.
- The loop never proposes more trials than the study asked for: finished + live = n_trials.
- Outcome kinds: success -> COMPLETE (or PRUNED); "trial_failed" -> FAILED, no retry;
  "fatal" -> FAILED, then the search stops with FatalError; "crash" -> retried up to
  `max_retries` times, then FAILED. After `max_consecutive_failures` failures in a row
  the search stops: something is wrong with the setup, not with the candidates.
- The controller's state is saved after every ask and every tell.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from autopeft.exceptions import FatalError, SpaceDriftError
from autopeft.names import study_dir
from autopeft.records import EvalRequest, Metrics, Proposal, TrialRecord, TrialState

logger = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = "autopeft_runs"


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


def load_context(storage: Any, name: str, *, check_space_file: bool = True) -> StudyContext:
    """Rebuild a stored study's bound space and config; refuse a changed space file."""
    from autopeft.config import check_no_code_hooks
    from autopeft.models import model_info
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
                f"space: autopeft search --space {info.space_source} --study NEW_NAME"
            )
    experiment = dict(info.experiment)
    model = model_info(experiment["model"])
    bound = space.bind(num_layers=model.num_layers, hidden_size=model.hidden_size)
    attrs = storage.get_study_attrs(name)
    return StudyContext(name=name, space=bound, experiment=experiment, seed=int(info.seed),
                        n_trials=int(info.n_trials),
                        runs_dir=study_dir(attrs.get("runs_dir", DEFAULT_RUNS_DIR), name))


def score(metrics: Metrics, experiment: Mapping[str, Any]) -> tuple[float, bool, list[str]]:
    """The reward of a trial from its stored metrics (pure; λ can change later)."""
    from autopeft.reward import score as reward_score

    result = reward_score(metrics, experiment)
    return result.reward, result.feasible, list(result.reasons)


class StudyRunner:
    """Runs one study to completion (or until stopped) with a given executor."""

    def __init__(self, storage: Any, ctx: StudyContext, controller: Any, executor: Any, *,
                 max_retries: int = 2, max_consecutive_failures: int = 5,
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        self.storage = storage
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
        self._t0 = time.monotonic()
        self.progress = Progress(n_trials=ctx.n_trials)

    # -- the loop -------------------------------------------------------------------
    def run(self) -> Progress:
        name = self.ctx.name
        self.storage.set_study_status(name, "running")
        requeued = self.storage.requeue_interrupted(name)
        if requeued:
            logger.info("re-running %d interrupted trial(s): %s", len(requeued), requeued)
        self._queue = self.storage.get_trials(name, states=[TrialState.PENDING])
        self._refresh_progress("resumed" if requeued else "started")
        try:
            while True:
                self._fill()
                if not self._live:
                    if self._queue:
                        continue
                    break
                for outcome in self.executor.wait(timeout=1.0):
                    self._handle(outcome)
                self._refresh_progress()
        except KeyboardInterrupt:
            self._interrupt()
            raise
        except BaseException:
            self._interrupt()
            raise
        status = "finished" if self.progress.finished >= self.ctx.n_trials else "stopped"
        self.storage.set_study_status(name, status)
        self._refresh_progress(status)
        return self.progress

    def _fill(self) -> None:
        """Create and submit trials until workers are busy or the budget is reached."""
        while self.executor.in_flight < self.executor.capacity:
            if not self._queue:
                if self._budget_left() <= 0 or self._controller_done:
                    return
                proposal = self.controller.ask()
                if proposal is None:
                    self._controller_done = True
                    return
                if proposal == "wait":
                    return
                record = self._create(proposal)
                self._queue.append(record)
            record = self._queue.pop(0)
            self._submit(record)

    def _budget_left(self) -> int:
        done = len(self.storage.get_trials(self.ctx.name, states=[
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED]))
        return self.ctx.n_trials - done - len(self._live) - len(self._queue)

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

    def _interrupt(self) -> None:
        """Mark live trials interrupted (re-run on resume); never lose a finished one."""
        numbers = sorted(set(self._live) | {r.number for r in self._queue})
        try:
            if numbers:
                self.storage.mark_interrupted(self.ctx.name, numbers)
            self.storage.set_study_status(self.ctx.name, "interrupted")
        finally:
            self._live.clear()
            self._queue.clear()
            self.executor.shutdown()

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


def best_trial(trials: list[TrialRecord], *, feasible_only: bool = True) -> TrialRecord | None:
    scored = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
              and t.reward is not None and (t.feasible or not feasible_only)]
    if not scored and feasible_only:
        return best_trial(trials, feasible_only=False)
    return max(scored, key=lambda t: (t.reward, -t.number), default=None)


def trial_seed(study_seed: int, number: int) -> int:
    """Each trial's own seed, derived (not drawn) so retries and resumes reuse it."""
    return (int(study_seed) * 1_000_003 + int(number)) % (2**31 - 1)


def _start_step(storage: Any, name: str, record: TrialRecord) -> int:
    if record.warm_start_from is None:
        return 0
    parent = storage.get_trial(name, record.warm_start_from)
    if parent.metrics is None:
        return 0
    return int(parent.metrics.steps)
