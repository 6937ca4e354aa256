"""The fake evaluators and the fake cost, in one place (for tests, benchmarks and users).

Cost: `fake_cost(candidate)` is an analytic count of a candidate's new parameters per
module type (not autopeft.cost: no model is loaded), against MiniLM-L6's size. Every fake
below, and AnalyticObjective in autopeft.testing.fakes, uses it.

Evaluators:

- `AnalyticEvaluator` (factory `analytic`): a metric that is an analytic function of the
  candidate (`analytic_metric`: capacity helps, a wild learning rate hurts), so
  controllers have something to learn; reports follow a saturating curve. Options in
  experiment["evaluator_options"] or JSON in $AUTOPEFT_FAKE: sleep, steps, checkpoints,
  fail_if (a substring of the candidate that makes the trial fail), crash_marker (a file:
  while absent, the first trial creates it and crashes with a RuntimeError -> retried).
- `FakeEvaluator` (factories deterministic, failing, fatal, broken, self_killing,
  cpu_bound, env_probe, broken_setup): for executors (serial and Ray). Its metric is a
  pure function of (candidate, seed) (`fake_metric`), so the same request gives identical
  Metrics on any executor. Tuned with experiment["fake"] or $AUTOPEFT_RAY_FAKE:

    sleep        seconds one trial takes, spread over its steps (default 0.0)
    steps        intermediate reports per trial (default 4)
    started_dir  a folder where each trial writes "started-<trial>-<attempt>" when it
                 begins (tests wait for it before killing a worker mid-trial), and each
                 evaluator "created-<pid>-<n>" when it is created (workers reuse theirs)
    marker       a file path: `self_killing` kills its own process the first time it runs
                 a trial (the file does not exist yet), then creates the file
    work         `cpu_bound`: units of CPU work per trial (one unit ~ 1 MB hashed)

  Ray workers see the driver's environment as it was when the runtime started.
  train_seconds is the nominal `sleep`, not a measured time (except `cpu_bound`).
- `StepPruner`: a scripted pruner that remembers what it was asked.

Fakes are injected from Python only (`autopeft.cli.main(argv, evaluator_factory=...)`,
`executor_factory(evaluator_factory=...)`, or `python -m autopeft.testing.fake_cli`):
no YAML file or database row names code to import. The old module paths
autopeft.testing.study_fakes and autopeft.testing.ray_fakes still work.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Mapping

from autopeft.evaluation.base import Evaluator, Reporter
from autopeft.exceptions import FatalError, TrialFailedError
from autopeft.records import Cost, EvalRequest, Metrics

BASE_PARAMS = 22_700_000                 # MiniLM-L6 (shared/design/FACTS.md)
BASE_FLOPS_PER_TOKEN = 2 * BASE_PARAMS   # forward pass ~ 2 FLOPs per parameter per token


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def trainable_params(candidate: Mapping[str, Any], hidden: int = 384) -> int:
    """A rough analytic count of a candidate's new parameters (a fake, not autopeft.cost)."""
    total = 0
    for m in candidate.get("modules", []):
        layers = len(m.get("layers") or [0])
        targets = len(m.get("targets") or ())
        t = m["type"]
        if t == "lora":
            total += 2 * m["rank"] * hidden * targets * layers
        elif t in ("adapter", "parallel_adapter"):
            twice = 2 if m.get("placement") == "houlsby" else 1
            total += 2 * m["size"] * hidden * layers * twice
        elif t == "prefix":
            total += 2 * m["length"] * hidden * layers
        elif t == "prompt":
            total += m["length"] * hidden
        elif t in ("ia3", "bitfit"):
            total += hidden * max(1, targets) * layers
        else:  # unipelt, mam: the sum of their parts, roughly
            for k in ("rank", "size", "prefix_length"):
                total += 2 * int(m.get(k) or 0) * hidden * layers
    return int(total)


def fake_cost(candidate: Mapping[str, Any]) -> Cost:
    """The one fake cost: `trainable_params` against MiniLM-L6, two FLOPs per weight."""
    trainable = trainable_params(candidate)
    extra = 2.0 * trainable
    return Cost(trainable_params=trainable, base_params=BASE_PARAMS,
                params_ratio=trainable / BASE_PARAMS,
                base_flops_per_token=BASE_FLOPS_PER_TOKEN, extra_flops_per_token=extra,
                flops_ratio=extra / BASE_FLOPS_PER_TOKEN, flops_ratio_merged=0.0)


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


# -- the analytic evaluator (the study loop's fake) ----------------------------------------
def _text_unit(text: str) -> float:
    """A deterministic number in [0, 1) from a string."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12


def analytic_metric(candidate: Mapping[str, Any]) -> float:
    """Accuracy-like score in (0, 1): rewards some capacity, mildly penalises a lot."""
    mods = candidate.get("modules", [])
    capacity = 0.0
    for m in mods:
        size = m.get("rank") or m.get("size") or m.get("length") or 4
        layers = len(m.get("layers", [0]) or [0])
        capacity += math.log2(1 + float(size)) * (0.5 + 0.5 * layers / max(1, candidate.get("num_layers") or 6))
    lr = float(candidate.get("hyper", {}).get("learning_rate", 1e-3))
    lr_term = -0.05 * (math.log10(lr) + 3) ** 2
    base = 0.55 + 0.35 * (1 - math.exp(-capacity / 4)) + lr_term
    noise = 0.02 * (_text_unit(str(sorted(candidate.items()))) - 0.5)
    return min(0.99, max(0.01, base + noise))


class AnalyticEvaluator(Evaluator):
    """Reports `checkpoints` intermediate values, then returns the analytic metric.

    Options (experiment["evaluator_options"], or JSON in $AUTOPEFT_FAKE): sleep (seconds per trial), steps, fail_if (substring of
    the candidate summary that makes the trial fail), crash_marker (a file: while absent,
    the first trial creates it and crashes with a RuntimeError -> retried).
    """

    def __init__(self, experiment: Mapping[str, Any]) -> None:
        opts = experiment.get("evaluator_options") or json.loads(
            os.environ.get("AUTOPEFT_FAKE", "{}"))
        self.options = dict(opts)
        self.calls = 0

    def evaluate(self, request: EvalRequest, reporter: Reporter) -> Metrics:
        self.calls += 1
        opts = self.options
        cand = dict(request.candidate)
        marker = opts.get("crash_marker")
        if marker and not Path(marker).exists():
            Path(marker).write_text(str(request.trial_number))
            raise RuntimeError("injected crash (study_fakes crash_marker)")
        if opts.get("fail_if") and opts["fail_if"] in str(cand):
            raise TrialFailedError(f"injected failure for {opts['fail_if']!r}")
        final = analytic_metric(cand)
        cost = fake_cost(cand)
        note = getattr(reporter, "note_cost", None)
        if note is not None:  # as the proxy evaluator does, for cost-aware pruners
            note(request.trial_number, cost)
        steps = int(opts.get("steps", 100))
        checkpoints = int(opts.get("checkpoints", 4))
        sleep = float(opts.get("sleep", 0.0))
        reports: list[tuple[int, float]] = []
        pruned = False
        for i in range(1, checkpoints + 1):
            if sleep:
                time.sleep(sleep / checkpoints)
            step = request.start_step + steps * i // checkpoints
            value = final * (1 - 0.5 ** (i + 1)) / (1 - 0.5 ** (checkpoints + 1))
            reports.append((step, value))
            if not reporter.report(request.trial_number, step, value):
                pruned = True
                break
        ckpt = None
        if request.checkpoint_dir:
            Path(request.checkpoint_dir).mkdir(parents=True, exist_ok=True)
            ckpt = request.checkpoint_dir
            (Path(ckpt) / "fake_state.txt").write_text(f"{reports[-1][1]!r}")
        return Metrics(metric=reports[-1][1], metric_name="accuracy",
                       cost=cost, intermediate=tuple(reports),
                       steps=reports[-1][0], train_seconds=sleep, pruned=pruned,
                       checkpoint=ckpt, extra={"pid": os.getpid()})


def analytic(experiment: Mapping[str, Any]) -> Evaluator:
    return AnalyticEvaluator(experiment)
