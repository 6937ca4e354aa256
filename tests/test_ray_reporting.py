"""PrunerReporter and attach_reports: the pruning path both executors share (no Ray here)."""
from __future__ import annotations

import math

import pytest

from autopeft.executors.base import Outcome
from autopeft.executors.reporting import PrunerReporter, attach_reports, pruner_call
from autopeft.executors.serial import SerialExecutor
from autopeft.records import EvalRequest, Metrics
from autopeft.testing.ray_fakes import StepPruner, fake_cost


def _metrics(intermediate=()) -> Metrics:
    return Metrics(metric=0.7, metric_name="accuracy", cost=fake_cost({"x": 1}),
                   intermediate=tuple(intermediate))


def test_without_a_pruner_it_records_and_never_stops():
    rep = PrunerReporter()
    assert all(rep.report(4, step, 0.1 * step) for step in (1, 2, 3))
    assert not rep.stopped(4)
    assert rep.take_reports(4) == ((1, 0.1), (2, 0.2), (3, pytest.approx(0.3)))
    assert rep.take_reports(4) == ()  # forgotten once taken


def test_it_asks_the_pruner_with_the_noted_cost():
    pruner = StepPruner(stop_trials=(9,), at_step=2)
    rep = PrunerReporter(pruner)
    cost = fake_cost({"trial": 9})
    rep.note_cost(9, cost)
    assert rep.report(9, 1, 0.5) is True
    assert rep.report(9, 2, 0.6) is False
    assert rep.stopped(9)
    assert rep.report(3, 1, 0.4) is True  # no cost noted for trial 3
    assert pruner.seen() == [(9, 1, 0.5, cost.params_ratio), (9, 2, 0.6, cost.params_ratio),
                             (3, 1, 0.4, None)]
    rep.take_reports(9)
    assert not rep.stopped(9)


def test_a_nan_report_is_recorded_but_not_judged():
    pruner = StepPruner(stop_trials=(1,), at_step=1)
    rep = PrunerReporter(pruner)
    assert rep.report(1, 1, float("nan")) is True
    assert pruner.seen() == []
    (step, value), = rep.take_reports(1)
    assert step == 1 and math.isnan(value)


def test_attach_reports_fills_only_what_the_evaluator_left_out():
    rep = PrunerReporter()
    rep.report(2, 10, 0.3)
    rep.report(2, 20, 0.4)
    bare = Outcome(trial_number=2, attempt=0, metrics=_metrics())
    assert attach_reports(bare, rep).metrics.intermediate == ((10, 0.3), (20, 0.4))

    rep.report(2, 10, 0.3)
    own = Outcome(trial_number=2, attempt=0, metrics=_metrics([(5, 0.9)]))
    assert attach_reports(own, rep).metrics.intermediate == ((5, 0.9),)
    assert rep.take_reports(2) == ()  # forgotten even when not used

    rep.report(2, 10, 0.3)
    failed = Outcome(trial_number=2, attempt=0, error="boom", error_kind="crash")
    assert attach_reports(failed, rep) is failed
    assert rep.take_reports(2) == ()


def test_serial_executor_prunes_through_the_same_reporter():
    from autopeft.testing.ray_fakes import deterministic

    exp = {"fake": {"steps": 5}}
    pruner = StepPruner(stop_trials=(1,), at_step=2)
    ex = SerialExecutor(exp, reporter=PrunerReporter(pruner), evaluator_factory=deterministic)
    for n in (0, 1):
        ex.submit(EvalRequest(study="s", trial_number=n, candidate={"n": n}, experiment=exp,
                              seed=1))
    outcomes = ex.wait() + ex.wait()
    ex.shutdown()
    assert [o.metrics.pruned for o in outcomes] == [False, True]
    assert [o.metrics.steps for o in outcomes] == [5, 2]
    assert len(pruner.seen()) == 7


def test_pruner_call_reaches_public_methods_only():
    pruner = StepPruner()
    pruner.should_stop(1, 1, 0.5)
    assert pruner_call(pruner, "seen") == [(1, 1, 0.5, None)]
    with pytest.raises(AttributeError, match="private"):
        pruner_call(pruner, "__class__")
