"""A fake evaluator that knows the two fidelities, for tests/test_calibrate.py.

Proxy trials score `analytic_metric(candidate)` with a rising curve (best at the last of
4 reports). Full-fidelity runs score 3 points more on validation and also return a test
score, in the same order, or in the reverse order with {"invert": true} (a proxy that
ranks wrongly). Options in $AUTOPEFT_FAKE: sleep_full (seconds per full training),
started_dir (each full training writes started-<trial>-<pid>-<time> there first),
invert. Injected from Python; a subprocess runs `python -m calibrate_fakes ARGS...` (the
autopeft command line with this fake) with tests/ on its PYTHONPATH.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from autopeft.evaluation.base import Evaluator, Reporter
from autopeft.records import EvalRequest, Metrics
from autopeft.testing.evaluators import analytic_metric, fake_cost


class FidelityFake(Evaluator):
    def __init__(self, experiment: Mapping[str, Any]) -> None:
        self.opts = json.loads(os.environ.get("AUTOPEFT_FAKE") or "{}")
        self.calls: list[tuple[int, str]] = []

    def evaluate(self, request: EvalRequest, reporter: Reporter) -> Metrics:
        full = request.experiment.get("fidelity") == "full"
        self.calls.append((request.trial_number, "full" if full else "proxy"))
        base = analytic_metric(dict(request.candidate))
        if full and self.opts.get("started_dir"):
            Path(self.opts["started_dir"], f"started-{request.trial_number}-{os.getpid()}-"
                 f"{time.monotonic_ns()}").write_text("")
        if full and self.opts.get("sleep_full"):
            time.sleep(float(self.opts["sleep_full"]))
        final = base + 0.03 if full else base
        curve = tuple((25 * (i + 1), final * (0.85 + 0.05 * i)) for i in range(3)) + \
            ((100, final),)
        for step, value in curve:
            reporter.report(request.trial_number, step, value)
        test = None
        if full:
            test = (1.2 - base) if self.opts.get("invert") else base + 0.02
        ckpt = None
        if request.checkpoint_dir:
            Path(request.checkpoint_dir).mkdir(parents=True, exist_ok=True)
            ckpt = request.checkpoint_dir
        return Metrics(metric=final, metric_name="accuracy", cost=fake_cost(request.candidate),
                       intermediate=curve, steps=100, test_metric=test, checkpoint=ckpt,
                       extra={"n_validation": 500, "best_step": 100})


def fidelity(experiment: Mapping[str, Any]) -> Evaluator:
    return FidelityFake(experiment)


if __name__ == "__main__":  # the CLI with this fake, for tests that need a real process
    import sys

    from autopeft.cli import main

    sys.exit(main(sys.argv[1:], evaluator_factory=fidelity))
