"""Fake evaluators and a scripted pruner for testing executors (serial and Ray).

Inject one from Python (`RayExecutor(..., evaluator_factory=ray_fakes.<factory>)`,
`autopeft.cli.main(argv, evaluator_factory=...)`, or `python -m autopeft.testing.fake_cli
<factory> ...`) and tune it with `experiment["fake"]` (the executor's experiment), a dict of:

    sleep        seconds one trial takes, spread over its steps (default 0.0)
    steps        intermediate reports per trial (default 4)
    started_dir  a folder where each trial writes "started-<trial>-<attempt>" when it
                 begins (tests wait for it before killing a worker mid-trial), and each
                 evaluator "created-<pid>-<n>" when it is created (workers reuse theirs)
    marker       a file path: `self_killing` kills its own process the first time it runs
                 a trial (the file does not exist yet), then creates the file
    work         `cpu_bound`: units of CPU work per trial (one unit ~ 1 MB hashed)

The environment variable AUTOPEFT_RAY_FAKE (a JSON dict) supplies the same keys where an
experiment file cannot carry them (a strict YAML file run through the CLI); the
experiment's own "fake" dict wins. Ray workers see the driver's environment as it was
when the runtime started.

The metrics are a pure function of (candidate, seed), so the same request gives identical
Metrics on any executor; train_seconds is the nominal `sleep`, not a measured time, for
the same reason (except `cpu_bound`, whose purpose is measuring).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Mapping

from autopeft.evaluation.base import Evaluator, Reporter
from autopeft.exceptions import FatalError, TrialFailedError
from autopeft.records import Cost, EvalRequest, Metrics

BASE_PARAMS = 22_713_216  # all-MiniLM-L6-v2, so ratios look like the real ones


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def fake_cost(candidate: Mapping[str, Any]) -> Cost:
    trainable = 1_000 + int(_unit("params", candidate) * 200_000)
    ratio = trainable / BASE_PARAMS
    return Cost(trainable_params=trainable, base_params=BASE_PARAMS, params_ratio=ratio,
                base_flops_per_token=2.0 * BASE_PARAMS,
                extra_flops_per_token=2.0 * trainable, flops_ratio=ratio,
                flops_ratio_merged=ratio)


def fake_metric(candidate: Mapping[str, Any], seed: int) -> float:
    """The final validation score of a candidate under a seed, in [0.5, 0.9)."""
    return 0.5 + 0.4 * _unit("metric", candidate, int(seed))


class FakeEvaluator(Evaluator):
    """Trains nothing: reports a deterministic learning curve, optionally slowly.

    mode: "ok" | "trial_failed" | "fatal" | "error" | "self_kill" | "cpu".
    """

    def __init__(self, experiment: Mapping[str, Any], mode: str = "ok") -> None:
        cfg = {**json.loads(os.environ.get("AUTOPEFT_RAY_FAKE") or "{}"),
               **(experiment.get("fake") or {})}
        self.mode = mode
        self.sleep = float(cfg.get("sleep", 0.0))
        self.steps = max(1, int(cfg.get("steps", 4)))
        self.started_dir = cfg.get("started_dir")
        self.marker = cfg.get("marker")
        self.work = int(cfg.get("work", 0))
        self.pid = os.getpid()
        self.calls = 0  # trials served by this instance
        if self.started_dir:
            n = len(list(Path(self.started_dir).glob(f"created-{self.pid}-*")))
            Path(self.started_dir, f"created-{self.pid}-{n}").write_text(mode)

    def evaluate(self, request: EvalRequest, reporter: Reporter) -> Metrics:
        self.calls += 1
        if self.started_dir:
            name = f"started-{request.trial_number}-{request.attempt}"
            Path(self.started_dir, name).write_text(str(os.getpid()))
        if self.mode == "trial_failed":
            raise TrialFailedError(f"fake: candidate of trial {request.trial_number} is "
                                   "infeasible")
        if self.mode == "fatal":
            raise FatalError("fake: the base model is missing")
        if self.mode == "error":
            raise RuntimeError(f"fake: unexpected failure in trial {request.trial_number}")
        cost = fake_cost(request.candidate)
        reporter.note_cost(request.trial_number, cost)
        final = fake_metric(request.candidate, request.seed)
        curve: list[tuple[int, float]] = []
        pruned = False
        measured = 0.0
        for i in range(1, self.steps + 1):
            if self.sleep:
                time.sleep(self.sleep / self.steps)
            if self.mode == "cpu":
                measured += _burn(self.work / self.steps)
            step = request.start_step + i
            value = round(final * (i / self.steps) ** 0.5, 6)
            curve.append((step, value))
            if self.mode == "self_kill" and self.marker and _claim(self.marker):
                os.kill(os.getpid(), signal.SIGKILL)  # mid-trial, no clean-up: a real crash
            if not reporter.report(request.trial_number, step, value):
                pruned = True
                break
        return Metrics(metric=curve[-1][1], metric_name="accuracy", cost=cost,
                       intermediate=tuple(curve), train_loss=round(1.0 - curve[-1][1], 6),
                       steps=len(curve),
                       train_seconds=measured if self.mode == "cpu" else self.sleep,
                       pruned=pruned, extra={"fake": self.mode})


def _claim(marker: str) -> bool:
    """Create `marker` holding our pid; False if it exists (exclusive: one worker wins)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _burn(units: float) -> float:
    """Hash ~units MB in one thread (CPU-bound, holds the GIL); returns seconds taken."""
    start = time.perf_counter()
    block = b"\x5a" * (1 << 20)
    digest = b""
    for _ in range(int(units)):
        digest = hashlib.sha256(digest + block).digest()
    return time.perf_counter() - start


def deterministic(experiment: Mapping[str, Any]) -> Evaluator:
    return FakeEvaluator(experiment, "ok")


def failing(experiment: Mapping[str, Any]) -> Evaluator:
    """Every trial raises TrialFailedError."""
    return FakeEvaluator(experiment, "trial_failed")


def fatal(experiment: Mapping[str, Any]) -> Evaluator:
    """Every trial raises FatalError."""
    return FakeEvaluator(experiment, "fatal")


def broken(experiment: Mapping[str, Any]) -> Evaluator:
    """Every trial raises a plain RuntimeError (a bug: retried as a crash)."""
    return FakeEvaluator(experiment, "error")


def self_killing(experiment: Mapping[str, Any]) -> Evaluator:
    """Kills its own process mid-trial once (guarded by experiment["fake"]["marker"])."""
    return FakeEvaluator(experiment, "self_kill")


def cpu_bound(experiment: Mapping[str, Any]) -> Evaluator:
    """Burns `work` units of single-thread CPU per trial; train_seconds is measured."""
    return FakeEvaluator(experiment, "cpu")


class _EnvProbe(FakeEvaluator):
    """Reports the thread settings it runs under in Metrics.extra (imports torch)."""

    def __init__(self, experiment: Mapping[str, Any]) -> None:
        super().__init__(experiment, "ok")
        import torch  # noqa: F401 - loaded like a real evaluator would, before the first trial

    def evaluate(self, request: EvalRequest, reporter: Reporter) -> Metrics:
        import dataclasses

        import torch

        metrics = super().evaluate(request, reporter)
        probe = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                 "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
                 "torch_threads": torch.get_num_threads(), "pid": os.getpid()}
        return dataclasses.replace(metrics, extra={**metrics.extra, **probe})


def env_probe(experiment: Mapping[str, Any]) -> Evaluator:
    return _EnvProbe(experiment)


def broken_setup(experiment: Mapping[str, Any]) -> Evaluator:
    """Fails while being created, as a missing base model would."""
    raise FatalError("fake: cannot load the base model (broken_setup)")


class StepPruner:
    """A scripted pruner: stops the trials in `stop_trials` once they reach `at_step`.

    Remembers every question it was asked, so a test can check that the workers' reports
    reached it (through `seen`, callable remotely).
    """

    def __init__(self, stop_trials: tuple[int, ...] = (), at_step: int = 2) -> None:
        self.stop_trials = frozenset(stop_trials)
        self.at_step = at_step
        self.asked: list[tuple[int, int, float, float | None]] = []

    def should_stop(self, trial_number: int, step: int, value: float, *,
                    params_ratio: float | None = None) -> bool:
        self.asked.append((trial_number, step, value, params_ratio))
        return trial_number in self.stop_trials and step >= self.at_step

    def seen(self) -> list[tuple[int, int, float, float | None]]:
        return list(self.asked)
