"""The executors' fake evaluators: now in autopeft.testing.evaluators (one module for every
fake evaluator and the fake cost). This path stays for tests and
experiments that import from it."""
from autopeft.testing.evaluators import (
    BASE_PARAMS,
    FakeEvaluator,
    StepPruner,
    broken,
    broken_setup,
    cpu_bound,
    deterministic,
    env_probe,
    failing,
    fake_cost,
    fake_metric,
    fatal,
    self_killing,
)

__all__ = ["BASE_PARAMS", "FakeEvaluator", "StepPruner", "broken", "broken_setup",
           "cpu_bound", "deterministic", "env_probe", "failing", "fake_cost", "fake_metric",
           "fatal", "self_killing"]
