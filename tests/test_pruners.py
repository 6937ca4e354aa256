"""ASHA and the Pareto variant, driven by scripted intermediate reports."""
from __future__ import annotations

import json
import pickle

import pytest

from autopeft.exceptions import ConfigError
from autopeft.pruners import (
    ParetoHalvingPruner,
    SuccessiveHalvingPruner,
    front_ranks,
    make_pruner,
)


def test_rungs_are_geometric_and_bounded():
    p = SuccessiveHalvingPruner(min_resource=10, eta=3, max_resource=200)
    assert [p.rung_step(k) for k in range(4)] == [10, 30, 90, 270]
    assert [p._has_rung(k) for k in range(4)] == [True, True, True, False]


def test_top_one_in_eta_continues_at_each_rung():
    p = SuccessiveHalvingPruner(min_resource=10, eta=2)
    # the first trial at a rung is the best there: it continues
    assert p.should_stop(0, 10, 0.5) is False
    assert p.should_stop(1, 10, 0.4) is True     # 2 at the rung: top 1 -> trial 0 only
    assert p.should_stop(2, 10, 0.7) is False    # 3 at the rung: top 1 -> trial 2
    assert p.should_stop(3, 10, 0.6) is False    # 4: top 2 -> 0.7, 0.6
    assert p.should_stop(4, 10, 0.55) is True    # 5: top 2 -> 0.7, 0.6


def test_decisions_only_at_rungs():
    p = SuccessiveHalvingPruner(min_resource=10, eta=2)
    p.should_stop(0, 10, 0.9)
    # between rungs a weak trial is never stopped; at the rung it is
    assert p.should_stop(1, 5, 0.1) is False
    assert p.should_stop(1, 9, 0.1) is False
    assert p.should_stop(1, 10, 0.1) is True


def test_a_report_past_several_rungs_records_each():
    p = SuccessiveHalvingPruner(min_resource=10, eta=2)
    assert p.should_stop(0, 45, 0.8) is False   # rungs 10, 20, 40 at once
    assert [sorted(r) for r in p._rungs] == [[0], [0], [0]]
    assert p.should_stop(1, 10, 0.5) is True


def test_no_rung_at_or_past_max_resource():
    p = SuccessiveHalvingPruner(min_resource=10, eta=2, max_resource=20)
    p.should_stop(0, 10, 0.9)
    p.should_stop(0, 20, 0.9)
    assert p.should_stop(1, 10, 0.95) is False
    assert p.should_stop(2, 40, 0.0) is True    # judged at rung 10 only
    assert len(p._rungs) == 1


def test_min_trials_at_rung_defers_decisions():
    p = SuccessiveHalvingPruner(min_resource=1, eta=2, min_trials_at_rung=3)
    assert p.should_stop(0, 1, 0.9) is False
    assert p.should_stop(1, 1, 0.1) is False    # only 2 trials: too few to judge
    assert p.should_stop(2, 1, 0.05) is True


def test_diverged_values_stop():
    p = SuccessiveHalvingPruner()
    assert p.should_stop(0, 1, float("nan")) is True
    assert p.should_stop(1, 1, float("inf")) is True


def test_pareto_variant_keeps_a_cheap_trial_that_single_metric_asha_stops():
    reports = [(0, 10, 0.90, 0.05), (1, 10, 0.88, 0.001), (2, 10, 0.80, 0.06)]
    asha = SuccessiveHalvingPruner(min_resource=10, eta=3)
    pareto = ParetoHalvingPruner(min_resource=10, eta=3)
    asha_says = [asha.should_stop(t, s, v, params_ratio=r) for t, s, v, r in reports]
    pareto_says = [pareto.should_stop(t, s, v, params_ratio=r) for t, s, v, r in reports]
    assert asha_says == [False, True, True]
    # trial 1 is a little worse but 50x cheaper: not dominated, so it continues;
    # trial 2 is worse and dearer than trial 0: dominated, stopped
    assert pareto_says == [False, False, True]


def test_pareto_variant_fills_the_quota_by_fronts():
    p = ParetoHalvingPruner(min_resource=1, eta=2)
    # fronts: {0}, then {1}, then {2}; 4 trials -> quota 2
    for t, v, r in [(0, 0.9, 0.01), (1, 0.8, 0.02), (2, 0.7, 0.03)]:
        p.should_stop(t, 1, v, params_ratio=r)
    assert p.should_stop(3, 1, 0.75, params_ratio=0.025) is True   # 2 ahead >= quota 2
    q = ParetoHalvingPruner(min_resource=1, eta=2)
    for t, v, r in [(0, 0.9, 0.01), (1, 0.8, 0.02), (2, 0.7, 0.03)]:
        q.should_stop(t, 1, v, params_ratio=r)
    assert q.should_stop(3, 1, 0.85, params_ratio=0.015) is False  # 1 ahead < quota 2


def test_pareto_without_costs_is_single_metric_asha():
    reports = [(t, 10, v) for t, v in enumerate([0.5, 0.7, 0.2, 0.9, 0.4, 0.6, 0.65])]
    a, b = SuccessiveHalvingPruner(min_resource=10, eta=2), \
        ParetoHalvingPruner(min_resource=10, eta=2)
    assert [a.should_stop(*r) for r in reports] == [b.should_stop(*r) for r in reports]


def test_front_ranks():
    pts = {0: (0.9, 0.1), 1: (0.8, 0.05), 2: (0.7, 0.2), 3: (0.95, 0.3), 4: (0.6, 0.3)}
    assert front_ranks(pts) == {0: 0, 1: 0, 3: 0, 2: 1, 4: 2}


def _reports():
    vals = [0.5, 0.7, 0.2, 0.9, 0.4, 0.6, 0.65, 0.3, 0.8]
    out = []
    for step in (5, 10, 20, 40):
        for t, v in enumerate(vals):
            out.append((t, step, v + step / 100, 0.001 * (t + 1)))
    return out


@pytest.mark.parametrize("cls", [SuccessiveHalvingPruner, ParetoHalvingPruner])
def test_state_round_trip_pickle_and_rebuild(cls):
    reports = _reports()
    whole = cls(min_resource=5, eta=2)
    answers = [whole.should_stop(t, s, v, params_ratio=r) for t, s, v, r in reports]
    assert True in answers and False in answers

    half = len(reports) // 2
    first = cls(min_resource=5, eta=2)
    for t, s, v, r in reports[:half]:
        first.should_stop(t, s, v, params_ratio=r)
    via_json = cls(min_resource=5, eta=2)
    via_json.load_state_dict(json.loads(json.dumps(first.state_dict())))
    via_pickle = pickle.loads(pickle.dumps(first))
    rebuilt = cls(min_resource=5, eta=2)
    rebuilt.rebuild(reports[:half])
    for other in (via_json, via_pickle, rebuilt):
        rest = [other.should_stop(t, s, v, params_ratio=r) for t, s, v, r in reports[half:]]
        assert rest == answers[half:]


def test_make_pruner():
    assert make_pruner(None) is None and make_pruner({"type": "none"}) is None
    p = make_pruner({"type": "asha", "min_resource": 50, "eta": 3})
    assert isinstance(p, SuccessiveHalvingPruner) and (p.min_resource, p.eta) == (50, 3)
    assert isinstance(make_pruner("pareto_asha"), ParetoHalvingPruner)
    assert make_pruner("none") is None
    with pytest.raises(ConfigError, match="unknown pruner type 'median'"):
        make_pruner({"type": "median"})
    with pytest.raises(ConfigError) as info:
        make_pruner({"type": "asha", "min_resource": 0})
    assert info.value.path == "min_resource"


def test_works_behind_the_executors_reporter():
    """The study's PrunerReporter passes params_ratio from note_cost to the pruner."""
    from autopeft.executors.reporting import PrunerReporter
    from autopeft.records import Cost

    reporter = PrunerReporter(make_pruner({"type": "pareto_asha", "min_resource": 10,
                                           "eta": 3}))
    for trial, ratio in ((0, 0.05), (1, 0.001), (2, 0.06)):
        reporter.note_cost(trial, Cost(trainable_params=1, base_params=1, params_ratio=ratio,
                                       base_flops_per_token=1.0, extra_flops_per_token=0.0,
                                       flops_ratio=0.0, flops_ratio_merged=0.0))
    assert reporter.report(0, 10, 0.90) is True
    assert reporter.report(1, 10, 0.88) is True
    assert reporter.report(2, 10, 0.80) is False
