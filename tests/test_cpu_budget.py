"""A CPU-time budget for a study (StudyRunner cpu_budget_s): no trial starts once the
study's finished trials have used that many CPU seconds, counted over every run of it."""
from __future__ import annotations

import logging

import pytest

from autopeft.evaluation.base import Evaluator
from autopeft.records import Metrics
from autopeft.storage import open_storage
from autopeft.study import create_study, executor_factory, resume_study
from autopeft.study.runner import trial_cpu_seconds
from autopeft.testing.evaluators import fake_cost


class CpuReporting(Evaluator):
    """Trains nothing; each trial says it used `cpu` CPU seconds (None: says nothing)."""

    def __init__(self, cpu: float | None) -> None:
        self.cpu = cpu

    def evaluate(self, request, reporter):
        extra = {} if self.cpu is None else {"cpu_seconds": self.cpu}
        return Metrics(metric=0.5 + request.trial_number / 100, metric_name="accuracy",
                       cost=fake_cost(request.candidate), steps=1, extra=extra)


@pytest.fixture
def storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = open_storage(f"sqlite:///{tmp_path / 'cpu.db'}")
    yield s
    s.close()


def _run(storage, name, cpu, **kw):
    factory = executor_factory(evaluator=CpuReporting(cpu))
    return resume_study(storage, name, executor_factory=factory, **kw).run()


def _create(storage, n=10):
    return create_study(storage, "s", space="lora_only.yaml", experiment="default.yaml",
                        controller="random", n_trials=n, seed=1, recipes=False)


def test_no_trial_starts_once_the_cpu_budget_is_spent(storage):
    name = _create(storage)
    progress = _run(storage, name, 1.0, cpu_budget_s=2.5)
    # 0 s, 1 s and 2 s were below 2.5 when trials 0, 1, 2 started; 3 s is not
    assert progress.finished == 3
    assert storage.get_study(name).status == "stopped"
    assert progress.last_event == "stopped: CPU budget spent"
    # the budget is the study's, not the run's: the same budget again starts nothing
    assert _run(storage, name, 1.0, cpu_budget_s=2.5).finished == 3
    # a larger one continues from what was spent
    assert _run(storage, name, 1.0, cpu_budget_s=5.0).finished == 5
    _run(storage, name, 1.0)  # no budget: on to the study's 10 trials
    assert storage.get_study(name).status == "finished"
    assert storage.get_study(name).n_finished == 10


def test_a_trial_that_reports_no_cpu_counts_zero_and_is_named(storage, caplog):
    name = _create(storage, n=4)
    with caplog.at_level(logging.WARNING, logger="autopeft.study.runner"):
        progress = _run(storage, name, None, cpu_budget_s=1.0)
    assert progress.finished == 4  # nothing counted, so the trial budget ends it
    assert "trial 0 reports no cpu_seconds" in caplog.text
    assert caplog.text.count("trial 0 reports no cpu_seconds") == 1  # once per trial


def test_the_cpu_budget_must_be_positive(storage):
    name = _create(storage)
    with pytest.raises(ValueError, match="cpu_budget_s must be positive"):
        _run(storage, name, 1.0, cpu_budget_s=0)


def test_trial_cpu_seconds_reads_the_metrics_extra():
    cost = fake_cost({"modules": [{"type": "lora", "rank": 8}]})
    assert trial_cpu_seconds(Metrics(0.5, "accuracy", cost, extra={"cpu_seconds": 2})) == 2.0
    assert trial_cpu_seconds(Metrics(0.5, "accuracy", cost)) is None


@pytest.mark.slow
def test_the_proxy_evaluator_reports_the_cpu_seconds_of_a_real_trial(tmp_path):
    """A real (tiny) MiniLM trial: cpu_seconds is measured, positive and at most the
    trial's own wall time per thread (set-up excluded)."""
    import time

    from autopeft.config import load_experiment
    from autopeft.evaluation.base import NullReporter
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.records import EvalRequest

    cfg = load_experiment("default.yaml").to_dict()
    cfg["proxy"].update(train_examples=64, max_steps=4, eval_every=4,
                        validation_examples=32, rung_examples=None)
    ev = ProxyEvaluator(cfg)
    ev.setup()
    cand = {"modules": [{"type": "lora", "rank": 4, "targets": ["q", "v"],
                         "layers": list(range(6))}],
            "hyper": {"learning_rate": 1e-3}}
    t0 = time.perf_counter()
    m = ev.evaluate(EvalRequest("t", 0, cand, cfg, seed=1), NullReporter())
    wall = time.perf_counter() - t0
    cpu = m.extra["cpu_seconds"]
    assert 0 < cpu <= wall * cfg["resources"]["cpus"] + 0.5
    ev.close()
