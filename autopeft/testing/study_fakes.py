"""Fast, deterministic evaluators for testing the study loop without training.

Injected from Python: `autopeft.cli.main(argv, evaluator_factory=study_fakes.analytic)`,
or `python -m autopeft.testing.fake_cli analytic ...` for a separate driver process.
The metric is an analytic function of the candidate (so controllers have something to
learn), intermediate reports follow a saturating curve, and the cost is the analytic
parameter count from autopeft.cost when available.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

from autopeft.evaluation.base import Evaluator, Reporter
from autopeft.exceptions import TrialFailedError
from autopeft.records import Cost, EvalRequest, Metrics


def _unit(text: str) -> float:
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
    noise = 0.02 * (_unit(str(sorted(candidate.items()))) - 0.5)
    return min(0.99, max(0.01, base + noise))


def analytic_cost(candidate: Mapping[str, Any]) -> Cost:
    trainable = 0
    for m in candidate.get("modules", []):
        size = m.get("rank") or m.get("size") or m.get("length") or 4
        trainable += int(size) * 768 * len(m.get("layers", [0]) or [0])
    base = 22_700_000
    return Cost(trainable_params=trainable, base_params=base, params_ratio=trainable / base,
                base_flops_per_token=45e6, extra_flops_per_token=2.0 * trainable,
                flops_ratio=2.0 * trainable / 45e6, flops_ratio_merged=0.0,
                latency_ratio=0.0, mergeable=False)


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
        cost = analytic_cost(cand)
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
