"""Run trials in parallel on Ray: a local runtime (`--workers K`) or a cluster (`--ray-address`).

Workers are long-lived Ray actors. Each creates its Evaluator once (make_evaluator) and
serves many trials, so the base model and the tokenised data load once per worker, not
once per trial. The driver keeps a queue and hands one request at a time to an idle
worker; a worker that is still starting (loading the model) gets nothing until it says
it is ready, so a worker that can never start (its node is gone, or the cluster has no
room for it) never holds a trial hostage.

Why the driver stays the single writer to storage: workers return Outcomes and never
open the database. SQLite cannot take many concurrent writers (they would queue on its
file lock, or fail with "database is locked"); one writer keeps the study's invariants
(trial written before it runs, outcome written before anything is re-raised, no trial
lost or duplicated on resume) in one place, the study loop; and an Outcome is small
(a Metrics record of a few hundred bytes), so shipping it to the driver costs nothing
next to a trial that trains for seconds to minutes.

Faults. A worker process that dies mid-trial (killed, out of memory, segfault) or whose
node leaves the cluster turns into an Outcome with error_kind="crash"; the study
resubmits it with attempt+1 up to its retry limit. The executor replaces the dead actor
at once so capacity is kept; Ray places the replacement on any node with room. After
`max_restarts` replacements it stops replacing, and when no worker is left the queued
requests come back as "fatal" (the search cannot go on).

Pruning. The pruner object lives in one small actor (no CPU) next to the driver, so all
workers consult the same pruner state; each worker's PrunerReporter calls it remotely
(autopeft/executors/reporting.py; the serial executor calls the pruner directly).

Threads. Each worker is given `cpus_per_trial` CPUs by Ray; OMP_NUM_THREADS and
MKL_NUM_THREADS are set to that in its runtime_env and torch.set_num_threads(cpus) is
called in the actor, so K workers on K cores do not oversubscribe them.

Worker ids are "ray:<node id prefix>:<pid>" (node ids, not IPs: several nodes may share
an IP, e.g. a test cluster on 127.0.0.1).

On a real cluster every node must have autopeft (and the evaluator's dependencies)
installed in the Python that `ray start` runs with, and the driver must use the
cluster's authentication setting: Ray 2.60 turns token auth on for a head started where
~/.ray/auth_token exists, and then the driver needs RAY_AUTH_MODE=token and the same
token (Ray's token-auth documentation); a head started with RAY_AUTH_MODE=disabled needs
nothing.
"""
from __future__ import annotations

import collections
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from autopeft._imports import require
from autopeft.exceptions import ConfigError
from autopeft.executors.base import Executor, Outcome
from autopeft.executors.ray_actors import PrunerHost, TrialWorker
from autopeft.records import EvalRequest

ray = require("ray")

logger = logging.getLogger(__name__)


@dataclass
class _Slot:
    """One worker place: the actor filling it and what it is doing."""

    actor: Any
    ready_ref: Any = None                # set while the actor is starting
    info: dict[str, Any] = field(default_factory=dict)
    request: EvalRequest | None = None   # set while it runs a trial
    eval_ref: Any = None
    dispatched_at: float = 0.0

    @property
    def worker(self) -> str | None:
        return self.info.get("worker")


@dataclass(frozen=True)
class WorkerInfo:
    worker: str | None      # None while the actor is starting
    pid: int | None
    node_id: str | None
    trial_number: int | None  # the trial it is running, if any


class RayExecutor(Executor):
    """Runs EvalRequests on `workers` long-lived Ray actors (see the module docstring).

    experiment: the experiment dict (ExperimentConfig.to_dict()); every worker calls
        make_evaluator(experiment) once.
    workers: how many trials run at once (the executor's capacity).
    address: None starts a private local Ray runtime sized for the workers; "host:port"
        joins a cluster started with `ray start --head`. If Ray is already initialised in
        this process, that runtime is used and left running at shutdown.
    cpus_per_trial, gpus_per_trial: Ray resources each worker holds (experiment
        `resources: {cpus, gpus}`); gpus may be a fraction to share a GPU.
    pruner: optional, picklable, with should_stop(trial_number, step, value, *,
        params_ratio=None) -> bool; consulted during training through the reporter.
    max_restarts: how many dead workers may be replaced over the executor's life.
    init_options: extra keyword arguments for ray.init.
    evaluator_factory: experiment -> Evaluator, instead of the proxy trainer (tests).
    """

    def __init__(self, experiment: Mapping[str, Any], *, workers: int,
                 address: str | None = None, cpus_per_trial: float = 1,
                 gpus_per_trial: float = 0, pruner: Any = None, max_restarts: int = 20,
                 init_options: Mapping[str, Any] | None = None,
                 evaluator_factory: Any = None) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"the number of workers must be a whole number >= 1, got "
                              f"{workers!r}", path="--workers", value=workers,
                              fix="pass --workers 1 or more")
        if not cpus_per_trial or cpus_per_trial <= 0:
            raise ConfigError(f"cpus per trial must be > 0, got {cpus_per_trial!r}",
                              path="resources.cpus", value=cpus_per_trial,
                              fix="set resources.cpus to 1 or more (fractions allowed)")
        if gpus_per_trial is None or gpus_per_trial < 0:
            raise ConfigError(f"gpus per trial must be >= 0, got {gpus_per_trial!r}",
                              path="resources.gpus", value=gpus_per_trial,
                              fix="set resources.gpus to 0, a fraction such as 0.5, or 1")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        self._experiment = dict(experiment)
        # experiment -> Evaluator, given from Python (tests); Ray pickles it by reference,
        # so it must be importable on the workers (a module-level function or a partial)
        self._factory = evaluator_factory
        self._workers = workers
        self._cpus = float(cpus_per_trial)
        self._gpus = float(gpus_per_trial)
        self._max_restarts = max_restarts
        self.restarts = 0
        self._startup_deaths = 0  # in a row: workers that died before they were ready
        self._last_death = ""
        self._queue: collections.deque[EvalRequest] = collections.deque()
        self._slots: list[_Slot] = []
        self._closed = False
        self._owns_runtime = False
        self._start_runtime(address, dict(init_options or {}))
        self.worker_id = f"ray:{address or 'local'}"  # the study logs it per trial
        self._pruner = None
        try:
            self._check_room(address)
            if pruner is not None:
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                here = ray.get_runtime_context().get_node_id()
                strategy = NodeAffinitySchedulingStrategy(node_id=here, soft=True)
                self._pruner = ray.remote(PrunerHost).options(
                    num_cpus=0, scheduling_strategy=strategy).remote(pruner)
            for _ in range(workers):
                self._slots.append(self._new_slot())
        except BaseException:
            self.shutdown()
            raise
        logger.info("Ray executor: %d worker(s), %g CPU and %g GPU each, address %s",
                    workers, self._cpus, self._gpus, address or "local")

    def _check_room(self, address: str | None) -> None:
        """A local runtime that cannot hold one worker never will (no GPU here): refuse.
        A cluster may grow (nodes join later): warn."""
        have = ray.cluster_resources()
        fit = min(have.get("CPU", 0) / self._cpus,
                  have.get("GPU", 0) / self._gpus if self._gpus else float("inf"))
        if fit >= self._workers:
            return
        room = {k: have.get(k, 0) for k in ("CPU", "GPU")}
        if fit < 1 and not address and self._owns_runtime:
            raise ConfigError(
                f"a worker needs {self._cpus:g} CPU and {self._gpus:g} GPU but this machine "
                f"has {room}", path="resources", value={"cpus": self._cpus,
                                                        "gpus": self._gpus},
                fix="set resources.gpus: 0 on a machine without a GPU, or join a cluster "
                    "that has GPUs with --ray-address")
        logger.warning("the Ray cluster has room for %d of the %d workers now (%s); the "
                       "others start when nodes join", int(fit), self._workers, room)

    # -- runtime ----------------------------------------------------------------------
    def _start_runtime(self, address: str | None, options: dict[str, Any]) -> None:
        if ray.is_initialized():
            logger.info("using the Ray runtime already initialised in this process")
            return
        options.setdefault("include_dashboard", False)
        options.setdefault("log_to_driver", False)  # worker logs stay in the session dir
        options.setdefault("logging_level", logging.WARNING)
        if address:
            options.pop("include_dashboard")  # a cluster's head decides that
            ray.init(address=address, **options)
        else:
            cpus = math.ceil(self._workers * self._cpus)
            if cpus > (os.cpu_count() or 1):
                logger.warning("%d worker(s) x %g CPU = %d CPUs on a machine with %s cores: "
                               "trials will compete for cores", self._workers, self._cpus,
                               cpus, os.cpu_count())
            options.setdefault("num_cpus", cpus)
            # "local": never attach to a cluster someone else started on this machine
            ray.init(address="local", **options)
        self._owns_runtime = True

    def _new_slot(self) -> _Slot:
        threads = str(max(1, int(self._cpus)))
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "TOKENIZERS_PARALLELISM": "false"}
        actor = ray.remote(TrialWorker).options(
            num_cpus=self._cpus, num_gpus=self._gpus, max_restarts=0, max_task_retries=0,
            scheduling_strategy="SPREAD", runtime_env={"env_vars": env},
        ).remote(self._experiment, self._cpus, self._pruner, self._factory)
        return _Slot(actor=actor, ready_ref=actor.ready.remote())

    def _replace(self, slot: _Slot, why: str) -> None:
        """Kill what is left of a slot's actor and start another, within max_restarts.

        Workers that keep dying before they are ready (2 x workers in a row, at least 3)
        mean a broken setup, not bad luck: replacing them would only spin.
        """
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - it is usually dead already
            pass
        self._slots.remove(slot)
        self._last_death = why
        if self.restarts >= self._max_restarts:
            logger.error("worker %s died (%s) and max_restarts=%d replacements are used up; "
                         "%d worker(s) left", slot.worker, why, self._max_restarts,
                         len(self._slots))
            return
        if self._startup_deaths >= max(3, 2 * self._workers):
            logger.error("%d workers in a row died before they were ready; not replacing "
                         "any more (%d left). Last error: %s", self._startup_deaths,
                         len(self._slots), why)
            return
        self.restarts += 1
        logger.warning("worker %s died (%s); starting a replacement (%d/%d)", slot.worker,
                       why, self.restarts, self._max_restarts)
        self._slots.append(self._new_slot())

    # -- Executor ---------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._workers

    @property
    def in_flight(self) -> int:
        return len(self._queue) + sum(s.request is not None for s in self._slots)

    def submit(self, request: EvalRequest) -> None:
        if self._closed:
            raise RuntimeError("submit() after shutdown(): create a new RayExecutor")
        self._queue.append(request)
        self._dispatch()

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        outcomes: list[Outcome] = []
        while True:
            self._dispatch()
            outcomes.extend(self._orphans())
            refs = [s.eval_ref for s in self._slots if s.eval_ref is not None]
            refs += [s.ready_ref for s in self._slots if s.ready_ref is not None]
            if not refs:
                return outcomes
            if outcomes:
                left = 0.0
            elif deadline is None:
                left = None
            else:
                left = max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(refs, num_returns=1, timeout=left)
            if ready:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                outcome = self._collect(ref)
                if outcome is not None:
                    outcomes.append(outcome)
            if outcomes:
                self._dispatch()
                return outcomes
            if deadline is not None and time.monotonic() >= deadline:
                return outcomes

    def _collect(self, ref: Any) -> Outcome | None:
        slot = next(s for s in self._slots if ref in (s.eval_ref, s.ready_ref))
        if ref == slot.ready_ref:
            slot.ready_ref = None
            try:
                slot.info = ray.get(ref)
            except ray.exceptions.RayError as exc:
                self._startup_deaths += 1
                self._replace(slot, f"while starting: {exc}")
                return None
            self._startup_deaths = 0
            if slot.info.get("init_error"):
                logger.error("worker %s could not create its evaluator: %s", slot.worker,
                             slot.info["init_error"])
            else:
                logger.debug("worker %s ready", slot.worker)
            return None
        request, started = slot.request, slot.dispatched_at
        slot.request, slot.eval_ref = None, None
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayError as exc:
            # the actor died (killed, OOM, its node left); the request is lost with it
            self._replace(slot, _first_line(exc))
            return Outcome(trial_number=request.trial_number, attempt=request.attempt,
                           error=f"worker {slot.worker} died while running trial "
                                 f"{request.trial_number}: {type(exc).__name__}: {exc}",
                           error_kind="crash", worker=slot.worker,
                           wall_seconds=time.monotonic() - started)
        if outcome.error_kind is not None and outcome.error_kind != "trial_failed":
            logger.warning("trial %d on %s: %s: %s", outcome.trial_number, outcome.worker,
                           outcome.error_kind, _first_line(outcome.error))
        return outcome

    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._queue:
                return
            if slot.ready_ref is None and slot.request is None and slot.info:
                request = self._queue.popleft()
                slot.request = request
                slot.dispatched_at = time.monotonic()
                slot.eval_ref = slot.actor.evaluate.remote(request)

    def _orphans(self) -> list[Outcome]:
        """Queued requests that no worker will ever take (all replacements used up)."""
        if self._slots or not self._queue:
            return []
        text = (f"no Ray worker is left: every worker died and no more are started "
                f"({self.restarts} replacement(s) made, max_restarts={self._max_restarts}). "
                f"Last error: {self._last_death}\n  fix: check the worker logs in the Ray "
                f"session directory (/tmp/ray/session_latest/logs), then resume the study")
        out = [Outcome(trial_number=r.trial_number, attempt=r.attempt, error=text,
                       error_kind="fatal") for r in self._queue]
        self._queue.clear()
        return out

    # -- extras -----------------------------------------------------------------------
    def workers_info(self) -> list[WorkerInfo]:
        """The current workers (started ones have a pid) and what each runs."""
        return [WorkerInfo(worker=s.worker, pid=s.info.get("pid"),
                           node_id=s.info.get("node_id"),
                           trial_number=None if s.request is None else s.request.trial_number)
                for s in self._slots]

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block until every worker has created its evaluator: True; False on timeout or
        when no worker is left. Optional (dispatch waits for readiness anyway)."""
        deadline = time.monotonic() + timeout
        while True:
            pending = [s.ready_ref for s in self._slots if s.ready_ref is not None]
            if not pending:
                return bool(self._slots)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _ = ray.wait(pending, num_returns=len(pending), timeout=left)
            for ref in ready:
                self._collect(ref)
            self._dispatch()

    def call_pruner(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a public method of the pruner held by the pruner actor (e.g. to feed it
        stored reports on resume, or read its state)."""
        if self._pruner is None:
            raise RuntimeError("this executor was created without a pruner")
        return ray.get(self._pruner.call.remote(method, args, kwargs))

    def shutdown(self) -> None:
        """Stop the workers (and the local runtime this executor started). Queued and
        running requests are abandoned; the study marks them interrupted. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        idle = [s.actor.close.remote() for s in self._slots
                if s.request is None and s.ready_ref is None]
        if idle:
            ray.wait(idle, num_returns=len(idle), timeout=5.0)
        for slot in self._slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self._slots.clear()
        if self._pruner is not None:
            try:
                ray.kill(self._pruner, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
            self._pruner = None
        if self._owns_runtime and ray.is_initialized():
            ray.shutdown()
            self._owns_runtime = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def _first_line(text: Any) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""
