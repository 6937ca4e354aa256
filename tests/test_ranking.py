"""The one ordering of trials (autopeft.ranking) and the one dominance test (autopeft.pareto),
and that every place that ranks uses them: study.best_trial, the CLI leaderboard,
finalize.rank_trials and the SQL best reward of `ls` (checked in test_storage.py)."""
from __future__ import annotations

import pytest

from autopeft import pareto, ranking
from autopeft.cli.output import sort_trials
from autopeft.records import Cost, Metrics, TrialRecord, TrialState
from autopeft.study import best_trial

C, P, F = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED


def _cost(ratio: float) -> Cost:
    return Cost(trainable_params=int(ratio * 1e6), base_params=1_000_000, params_ratio=ratio,
                base_flops_per_token=2e6, extra_flops_per_token=2e6 * ratio,
                flops_ratio=ratio, flops_ratio_merged=0.0)


def _t(number, state, reward=None, feasible=True, metric=None, ratio=0.01) -> TrialRecord:
    metrics = None
    if state is not F:
        metrics = Metrics(metric=metric if metric is not None else reward or 0.0,
                          metric_name="accuracy", cost=_cost(ratio))
    return TrialRecord(number=number, state=state, assignment={}, candidate={},
                       metrics=metrics, reward=reward if state is not F else None,
                       feasible=feasible if state is not F else None)


TRIALS = [
    _t(0, C, 0.70),
    _t(1, C, 0.95, feasible=False),   # best reward, but infeasible
    _t(2, P, 0.99),                   # pruned: a partial score
    _t(3, F),
    _t(4, C, 0.80),
    _t(5, C, 0.80),                   # ties with 4: the earlier trial first
    _t(6, TrialState.RUNNING),
]


def test_the_rule():
    assert [t.number for t in ranking.rank(TRIALS)] == [4, 5, 0, 1]
    assert ranking.best(TRIALS).number == 4
    assert best_trial(TRIALS).number == 4
    assert ranking.best([_t(0, C, 0.9, feasible=False), _t(1, P, 0.9)]) is None
    assert ranking.best([]) is None


def test_the_leaderboard_shows_everything_ranked_first():
    order = [t.number for t in ranking.leaderboard(TRIALS)]
    assert order == [4, 5, 0, 1, 2, 3, 6]
    assert [t.number for t in sort_trials(TRIALS)] == order


def test_rescore_changes_lambda_and_limits_without_retraining():
    trials = [_t(0, C, 0.5, metric=0.90, ratio=0.04), _t(1, C, 0.5, metric=0.85, ratio=0.001),
              _t(2, P, 0.5, metric=0.99, ratio=0.0)]
    experiment = {"model": "minilm"}
    plain = ranking.rescore(trials, experiment, lam=0.0)
    assert [r.trial.number for r in plain] == [0, 1]  # pruned trials are not ranked
    assert plain[0].reward == pytest.approx(0.90)
    costly = ranking.rescore(trials, experiment, lam=10.0)
    assert [r.trial.number for r in costly] == [1, 0]
    tight = ranking.rescore(trials, experiment, lam=0.0, max_params_ratio=0.01)
    assert [(r.trial.number, r.feasible) for r in tight] == [(1, True), (0, False)]
    assert "max_params_ratio" in tight[1].reasons[0]
    assert tight[1].record.feasible is False and tight[1].trial.feasible is True
    assert [r.trial.number for r in ranking.top_feasible(tight, 5)] == [1]


def test_finalize_rank_trials_is_rescore(tmp_path):
    from autopeft.finalize import rank_trials
    from autopeft.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    storage.create_study(name="r", space_text="x", space_fingerprint="f",
                         experiment={"model": "minilm"}, controller="random", seed=0)
    for t in TRIALS:
        if t.state is TrialState.RUNNING:
            continue
        storage.create_trial("r", {}, {})
        storage.finish_trial("r", t.number, t.state, t.metrics, t.reward, t.feasible)
    _, ranked = rank_trials(storage, "r", lam=0.0)
    direct = ranking.rescore(storage.get_trials("r"), {"model": "minilm"}, lam=0.0)
    assert [(r[0].number, r[1], r[2]) for r in ranked] == [
        (r.trial.number, r.reward, r.feasible) for r in direct]
    storage.close()


def test_dominance_is_one_function_in_one_order():
    assert pareto.dominates((0.9, 0.01), (0.8, 0.01))
    assert pareto.dominates((0.9, 0.01, 0.0), (0.9, 0.02, 0.0))
    assert not pareto.dominates((0.9, 0.01), (0.9, 0.01))       # equal: neither
    assert not pareto.dominates((0.9, 0.05), (0.8, 0.01))       # a trade-off
    with pytest.raises(ValueError):
        pareto.dominates((1.0,), (1.0, 2.0))
    points = [(0.9, 0.05), (0.8, 0.01), (0.7, 0.02), (0.9, 0.05)]
    assert pareto.front(points) == [0, 1, 3]
    assert pareto.front_ranks(dict(enumerate(points))) == {0: 0, 1: 0, 2: 1, 3: 0}


def test_every_pareto_user_agrees_with_pareto_front():
    from autopeft import report, reward
    from autopeft.controllers import multiobjective
    from autopeft.pruners import front_ranks

    points = [(0.9, 0.05, 0.1), (0.8, 0.01, 0.1), (0.7, 0.02, 0.2), (0.95, 0.2, 0.0)]
    assert reward.pareto_front(points) == pareto.front(points)
    assert multiobjective.dominates is pareto.dominates
    assert front_ranks is pareto.front_ranks
    # report takes (cost, metric) pairs and orders the front by cost
    pairs = [(c, m) for m, c, _ in points]
    assert report.pareto_front(pairs) == sorted(
        pareto.front([(m, c) for c, m in pairs]), key=lambda i: pairs[i][0])


def test_ls_show_and_export_agree_on_the_best_trial(tmp_path, monkeypatch, capsys):
    import json
    import re

    from autopeft.cli import main
    from autopeft.testing.evaluators import analytic

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPEFT_FAKE", json.dumps({"fail_if": "'rank': 1,"}))
    exp = tmp_path / "fake.yaml"
    exp.write_text("name: fake\nmodel: minilm\nconstraints: {max_params_ratio: 0.01}\n")
    assert main(evaluator_factory=analytic, argv=["search", "--space", "lora_only.yaml", "--experiment", str(exp), "--trials",
                 "8", "--study", "b", "--quiet", "--seed", "2"]) == 0
    capsys.readouterr()
    assert main(["ls", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    best_reward = [s for s in listed if s["name"] == "b"][0]["best_reward"]
    assert main(["show", "b", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert main(["export", "b", "--out", "out", "--top-k", "1"]) == 0
    exported = int(re.search(r"exported trial (\d+)", capsys.readouterr().out).group(1))
    top = shown[0]
    assert top["number"] == exported and top["reward"] == pytest.approx(best_reward)
    assert top["state"] == "complete" and top["feasible"] is True
