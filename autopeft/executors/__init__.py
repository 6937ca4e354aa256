"""Executors run EvalRequests on workers and hand Outcomes back to the study."""
