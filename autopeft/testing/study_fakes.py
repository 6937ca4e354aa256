"""The study loop's fake evaluator: now in autopeft.testing.evaluators (one module for
every fake evaluator and the fake cost). This path stays for the tests that import it;
fakes are injected from Python (`autopeft.cli.main(argv, evaluator_factory=analytic)`)."""
from autopeft.testing.evaluators import AnalyticEvaluator, analytic, analytic_metric
from autopeft.testing.evaluators import fake_cost as analytic_cost

__all__ = ["AnalyticEvaluator", "analytic", "analytic_cost", "analytic_metric"]
