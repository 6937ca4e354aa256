"""Evaluation: turn an EvalRequest into Metrics by training a candidate on a proxy task."""
