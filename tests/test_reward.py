"""Reward, constraints and the Pareto front, computed from stored metrics only."""
import dataclasses

import pytest

from autopeft.config import ExperimentConfig
from autopeft.records import Cost, Metrics, TrialRecord, TrialState
from autopeft.reward import dominates, pareto_front, pareto_trials, score


def metrics(metric, params_ratio, flops_ratio=0.0, latency=None, merged=None):
    """merged: the FLOPs ratio once merging modules are merged (default: nothing merges,
    as for an adapter, so it equals flops_ratio)."""
    cost = Cost(trainable_params=int(params_ratio * 1e6), base_params=1_000_000,
                params_ratio=params_ratio, base_flops_per_token=1e6,
                extra_flops_per_token=flops_ratio * 1e6, flops_ratio=flops_ratio,
                flops_ratio_merged=flops_ratio if merged is None else merged,
                latency_ratio=latency)
    return Metrics(metric=metric, metric_name="accuracy", cost=cost)


def exp(**sections):
    return ExperimentConfig.from_dict(sections)


def test_reward_formula():
    cfg = exp(reward={"lambda": 2.0, "w_params": 1.0, "w_flops": 0.5},
              constraints={"max_params_ratio": None})
    r, feasible, reasons = score(metrics(0.9, 0.01, 0.04), cfg)
    # 0.9 − 2·(1·0.01 + 0.5·0.04) = 0.9 − 0.06
    assert r == pytest.approx(0.84)
    assert feasible and reasons == ()


def test_lambda_zero_gives_the_metric_and_dicts_work():
    cfg = exp(reward={"lambda": 0.0}).to_dict()
    assert score(metrics(0.77, 0.3).to_dict(), cfg).reward == pytest.approx(0.77)


def test_reward_and_flops_limit_count_the_deployed_flops():
    """A module that merges (LoRA) adds no FLOPs as deployed: neither the penalty nor a
    flops limit counts its unmerged FLOPs; an adapter (nothing merges) pays for its own."""
    cfg = exp(constraints={"max_params_ratio": None, "max_flops_ratio": 0.01})
    lora = score(metrics(0.9, 0.01, 0.02, merged=0.0), cfg)
    adapter = score(metrics(0.9, 0.01, 0.02), cfg)
    assert lora.reward == pytest.approx(0.89) and lora.feasible
    assert adapter.reward == pytest.approx(0.87) and not adapter.feasible
    assert adapter.reasons == ("flops_ratio=0.02 > max_flops_ratio=0.01",)
    # an old record without the merged figure is scored on the unmerged one
    old = metrics(0.9, 0.01, 0.02).to_dict()
    del old["cost"]["flops_ratio_merged"]
    assert score(old, cfg).reward == pytest.approx(0.87)


def test_constraints_make_a_trial_infeasible_with_reasons():
    cfg = exp(constraints={"max_params_ratio": 0.05, "max_latency_ratio": 0.15,
                           "max_flops_ratio": 0.1})
    s = score(metrics(0.95, 0.08, 0.2, latency=0.3), cfg)
    assert not s.feasible
    assert len(s.reasons) == 3
    assert any("params_ratio=0.08 > max_params_ratio=0.05" in r for r in s.reasons)
    ok = score(metrics(0.95, 0.01, 0.05, latency=None), cfg)
    assert ok.feasible  # latency not measured: not a violation


def test_rescoring_with_a_new_lambda_needs_no_training():
    m = metrics(0.9, 0.04)
    cfg = exp(reward={"lambda": 0.0})
    cheap = dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, lam=5.0))
    assert score(m, cfg).reward > score(m, cheap).reward


def test_dominates():
    assert dominates((0.9, 0.01, 0.0), (0.8, 0.01, 0.0))
    assert dominates((0.9, 0.01, 0.0), (0.9, 0.02, 0.0))
    assert not dominates((0.9, 0.01, 0.0), (0.9, 0.01, 0.0))
    assert not dominates((0.9, 0.05, 0.0), (0.8, 0.01, 0.0))


def test_pareto_front_by_hand():
    pts = [
        (0.90, 0.010, 0.00),  # 0 front
        (0.85, 0.020, 0.00),  # 1 dominated by 0
        (0.95, 0.050, 0.00),  # 2 front (best metric)
        (0.80, 0.001, 0.00),  # 3 front (cheapest)
        (0.90, 0.010, 0.00),  # 4 equal to 0: kept
        (0.90, 0.010, 0.10),  # 5 dominated by 0 on flops
    ]
    assert pareto_front(pts) == [0, 2, 3, 4]


def test_pareto_trials_uses_complete_trials_only():
    def rec(n, m, p, state=TrialState.COMPLETE, feasible=True):
        return TrialRecord(number=n, state=state, assignment={}, candidate={},
                           metrics=metrics(m, p), feasible=feasible)

    trials = [rec(0, 0.9, 0.01), rec(1, 0.99, 0.001, state=TrialState.PRUNED),
              rec(2, 0.8, 0.02), rec(3, 0.95, 0.2, feasible=False)]
    assert [t.number for t in pareto_trials(trials)] == [0, 3]
    assert [t.number for t in pareto_trials(trials, feasible_only=True)] == [0]


def _timed(metric, ratio, low, high, basis="measured"):
    m = metrics(metric, 0.01, latency=ratio)
    return dataclasses.replace(m, cost=dataclasses.replace(
        m.cost, latency_low=low, latency_high=high, latency_pairs=40, latency_confidence=0.99,
        latency_basis=basis))


def test_the_default_constraints_are_the_autopeft_workflows():
    c = ExperimentConfig().constraints
    assert (c.max_params_ratio, c.max_latency_ratio, c.max_flops_ratio) == (0.05, 0.15, None)
    r = ExperimentConfig().reward
    assert (r.lam, r.w_params, r.w_flops) == (1.0, 1.0, 1.0)


def test_a_latency_limit_is_decided_from_the_stored_interval_only():
    from autopeft.reward import latency_verdict

    cfg = exp()  # the default limit: 0.15
    over = score(_timed(0.9, 0.21, 0.18, 0.25), cfg)
    assert not over.feasible
    assert over.reasons == ("latency_ratio=0.21 (99% interval 0.18..0.25) > "
                            "max_latency_ratio=0.15",)
    # the point estimate is over the limit but the interval straddles it: uncertain, and a
    # violation needs evidence
    straddle = _timed(0.9, 0.16, 0.12, 0.19)
    assert score(straddle, cfg).feasible
    assert latency_verdict(straddle.cost.to_dict(), 0.15) == "uncertain"
    # the point is under the limit, the whole interval over another one
    assert latency_verdict(_timed(0.9, 0.10, 0.08, 0.12).cost.to_dict(), 0.15) == "within"
    assert latency_verdict(_timed(0.9, 0.10, 0.08, 0.12).cost.to_dict(), 0.05) == "over"
    merged = _timed(0.9, 0.0, 0.0, 0.0, basis="merged")
    assert score(merged, exp(constraints={"max_latency_ratio": 0.0})).feasible
    # a record stored before the interval existed: its point stands for both ends
    assert not score(metrics(0.9, 0.01, latency=0.2), cfg).feasible
    assert score(metrics(0.9, 0.01, latency=0.1), cfg).feasible


def test_rescoring_a_stored_latency_under_another_limit_reads_its_interval():
    from autopeft.ranking import rescore

    trials = [TrialRecord(number=i, state=TrialState.COMPLETE, assignment={}, candidate={},
                          metrics=m, reward=0.0, feasible=True)
              for i, m in enumerate([_timed(0.95, 0.12, 0.10, 0.14), _timed(0.90, 0.0, 0.0, 0.0,
                                                                             "merged")])]
    got = {r.trial.number: r.feasible for r in rescore(trials, {}, max_latency_ratio=0.15)}
    assert got == {0: True, 1: True}
    got = {r.trial.number: r.feasible for r in rescore(trials, {}, max_latency_ratio=0.09)}
    assert got == {0: False, 1: True}
    got = {r.trial.number: r.feasible for r in rescore(trials, {}, max_latency_ratio=0.11)}
    assert got == {0: True, 1: True}  # 0.11 inside 0.10..0.14: uncertain, not a violation
