"""PBT with scripted metrics (Syne Tune's tst/test_pbt.py style): who exploits whom, what is
explored, and whether adapter weights really travel along warm_start_from."""
from __future__ import annotations

import math

import numpy as np
import pytest

from autopeft.controllers import make_controller
from autopeft.records import Proposal, TrialState
from autopeft.space import load_space
from autopeft.testing.fakes import (
    AnalyticObjective,
    Driver,
    WeightEvaluator,
    make_record,
    mixed_space,
)


@pytest.fixture(scope="module")
def space():
    return load_space("lora_only.yaml").bind(num_layers=6, hidden_size=384)


def _round(ctrl):
    """Ask until 'wait' or None; returns the proposals of one round."""
    out = []
    while True:
        p = ctrl.ask()
        if not isinstance(p, Proposal):
            return out, p
        out.append(p)


def _tell_round(ctrl, proposals, first_number, metrics, space, failed=()):
    cost = AnalyticObjective(space).cost(proposals[0].assignment)
    for i, p in enumerate(proposals):
        member = p.meta["member"]
        if member in failed:
            rec = make_record(first_number + i, p, None, None, state=TrialState.FAILED)
        else:
            rec = make_record(first_number + i, p, metrics[member], cost)
        ctrl.tell(rec)
    return first_number + len(proposals)


def test_bottom_member_exploits_the_best_and_the_rest_continue(space):
    ctrl = make_controller("pbt", space, 3, population_size=4, quantile=0.25,
                           resample_probability=0.0)
    r0, answer = _round(ctrl)
    assert answer == "wait" and len(r0) == 4
    assert [p.meta["member"] for p in r0] == [0, 1, 2, 3]
    assert all(p.warm_start_from is None and p.meta["round"] == 0 for p in r0)
    _tell_round(ctrl, r0, 0, {0: 0.1, 1: 0.9, 2: 0.5, 3: 0.3}, space)

    r1, _ = _round(ctrl)
    by_member = {p.meta["member"]: p for p in r1}
    child = by_member[0]  # the worst copies the best (trial 1 = member 1 in round 0)
    assert child.warm_start_from == 1 and child.meta == {
        "member": 0, "round": 1, "parent": 1, "ask": 4}
    parent = r0[1].assignment
    explored = {"hp.learning_rate", "lora.alpha", "lora.dropout"}
    assert {k: v for k, v in child.assignment.items() if k not in explored} == \
        {k: v for k, v in parent.items() if k not in explored}
    ratio = child.assignment["hp.learning_rate"] / parent["hp.learning_rate"]
    lr = next(d for d in space.decisions if d.name == "hp.learning_rate")
    clipped = child.assignment["hp.learning_rate"] in (lr.low, lr.high)
    assert clipped or math.isclose(ratio, 0.8) or math.isclose(ratio, 1.2)
    for m in (1, 2, 3):  # the others continue from their own checkpoint, config unchanged
        assert by_member[m].warm_start_from == m
        assert by_member[m].assignment == r0[m].assignment and by_member[m].meta["parent"] is None
    space.validate(child.assignment)


def test_explore_moves_numeric_choices_to_a_neighbour(space):
    ctrl = make_controller("pbt", space, 0, population_size=2, quantile=0.5,
                           resample_probability=0.0)
    r0, _ = _round(ctrl)
    _tell_round(ctrl, r0, 0, {0: 0.2, 1: 0.8}, space)
    r1, _ = _round(ctrl)
    child, parent = r1[0].assignment, r0[1].assignment
    for name in ("lora.alpha", "lora.dropout"):
        opts = sorted(next(d for d in space.decisions if d.name == name).options())
        i, j = opts.index(parent[name]), opts.index(child[name])
        assert abs(i - j) == 1 or (i == j and i in (0, len(opts) - 1)), (name, parent, child)


def test_resampling_stays_within_the_range(space):
    ctrl = make_controller("pbt", space, 1, population_size=4, resample_probability=1.0,
                           rounds=30)
    lr = next(d for d in space.decisions if d.name == "hp.learning_rate")
    n, seen = 0, set()
    for _ in range(29):
        props, _ = _round(ctrl)
        for p in props:
            if p.meta["parent"] is not None:
                seen.add(p.assignment["hp.learning_rate"])
                assert lr.low <= p.assignment["hp.learning_rate"] <= lr.high
                space.validate(p.assignment)
        n = _tell_round(ctrl, props, n, {m: (m + n) % 4 / 4 for m in range(4)}, space)
    assert len(seen) > 10


def test_failed_members_exploit_and_all_failed_restarts(space):
    ctrl = make_controller("pbt", space, 2, population_size=4, quantile=0.25)
    r0, _ = _round(ctrl)
    n = _tell_round(ctrl, r0, 0, {0: 0.9, 1: 0.5, 2: 0.6, 3: 0.7}, space, failed=(1, 2))
    r1, _ = _round(ctrl)
    by_member = {p.meta["member"]: p for p in r1}
    for m in (1, 2):  # failed: no checkpoint of their own, they copy the best (trial 0)
        assert by_member[m].meta["parent"] == 0 and by_member[m].warm_start_from == 0
    assert by_member[3].warm_start_from == 3 and by_member[0].warm_start_from == 0
    n = _tell_round(ctrl, r1, n, {}, space, failed=(0, 1, 2, 3))
    r2, _ = _round(ctrl)
    assert all(p.warm_start_from is None and p.meta["parent"] is None for p in r2)


def test_rounds_bound_the_study(space):
    ctrl = make_controller("pbt", space, 0, population_size=3, rounds=2)
    r0, a0 = _round(ctrl)
    _tell_round(ctrl, r0, 0, {0: 0.1, 1: 0.2, 2: 0.3}, space)
    r1, a1 = _round(ctrl)
    assert a0 == a1 == "wait" and len(r0) == len(r1) == 3
    _tell_round(ctrl, r1, 3, {0: 0.1, 1: 0.2, 2: 0.3}, space)
    assert ctrl.ask() is None


def test_weights_are_inherited_along_warm_starts(space):
    """A fake trainer keeps a 'weight' per trial and continues from warm_start_from: every
    trial's first evaluation equals its warm-start trial's last one, and an exploiting
    member starts from its parent's weight, not its own."""
    cost = AnalyticObjective(space).cost(space.sample(np.random.default_rng(0)))
    evaluator = WeightEvaluator(lambda a: 1000 * a["hp.learning_rate"], cost)
    ctrl = make_controller("pbt", space, 7, population_size=4, rounds=6)
    driver = Driver(evaluator, parallel=3)
    driver.run(ctrl, 100)
    driver.drain(ctrl)
    assert ctrl.ask() is None and len(driver.proposals) == 24
    exploits = 0
    for number, p in enumerate(driver.proposals):
        if p.warm_start_from is None:
            assert evaluator.first[number] == 0.0
            continue
        assert evaluator.first[number] == evaluator.last[p.warm_start_from]
        parent_meta = driver.proposals[p.warm_start_from].meta
        if p.meta["parent"] is not None:
            exploits += 1
            assert parent_meta["member"] == p.meta["parent"] != p.meta["member"]
            assert parent_meta["round"] == p.meta["round"] - 1
        else:
            assert parent_meta["member"] == p.meta["member"]
    assert exploits >= 5  # one per round after the first
    # the chains grow: the best final weight beats the best single round-0 trial
    assert max(evaluator.last.values()) > 2 * max(evaluator.last[n] for n in range(4))


def test_explore_on_ranges_perturbs_by_the_factors_and_keeps_the_grid():
    space = mixed_space()
    ctrl = make_controller("pbt", space, 4, population_size=8, resample_probability=0.0,
                           rounds=8)
    n, checked, last = 0, 0, {}
    for _ in range(7):
        props, _ = _round(ctrl)
        by_member = {}
        for p in props:
            space.validate(p.assignment)
            if p.meta["parent"] is not None and "lora.alpha" in p.assignment:
                parent = last[p.meta["parent"]]
                alpha = next(d for d in space.decisions if d.name == "lora.alpha")
                ratio = p.assignment["lora.alpha"] / parent["lora.alpha"]
                edge = p.assignment["lora.alpha"] in (alpha.low, alpha.high)
                assert edge or any(math.isclose(ratio, f, rel_tol=1e-9) for f in (0.8, 1.2))
                d = p.assignment["lora.dropout"]
                assert math.isclose(d / 0.05, round(d / 0.05), abs_tol=1e-9)
                checked += 1
            by_member[p.meta["member"]] = p.assignment
        last = by_member
        n = _tell_round(ctrl, props, n, {m: ((m * 7 + n) % 8) / 8 for m in range(8)}, space)
    assert checked >= 5


def _an_exploit(space, need_changed=("lora.alpha", "lora.dropout")):
    """(parent proposal, exploiting child proposal) from a real PBT controller, with the
    child's alpha and dropout both moved by explore (the default explore list)."""
    for seed in range(50):
        ctrl = make_controller("pbt", space, seed, population_size=4, quantile=0.25,
                               resample_probability=0.0)
        r0, _ = _round(ctrl)
        _tell_round(ctrl, r0, 0, {0: 0.1, 1: 0.9, 2: 0.5, 3: 0.3}, space)
        r1, _ = _round(ctrl)
        child = next(p for p in r1 if p.meta["parent"] is not None)
        parent = r0[child.warm_start_from]
        if all(child.assignment[k] != parent.assignment[k] for k in need_changed):
            return parent, child
    raise AssertionError("no seed explored both alpha and dropout")


def test_an_exploiting_child_loads_its_parents_weights_with_the_real_loader(space, minilm,
                                                                            tmp_path):
    """The fake trainer above never builds a model, so it passed while the real loader
    refused every exploit whose alpha or dropout was explored ("saved for a different
    architecture"). Here the real modules are built on MiniLM and the real checkpoint
    is loaded: alpha and dropout change no weight shape, so it must load, exactly."""
    import torch

    from autopeft.methods import build

    parent_p, child_p = _an_exploit(space)
    parent = build(minilm, space.to_candidate(parent_p.assignment), seed=1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # stand-in for training: move every trainable weight
        for p in parent.trainable_parameters().values():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    parent.save(tmp_path / "parent")
    child = build(minilm, space.to_candidate(child_p.assignment), seed=2)
    child.load_adapter_weights(tmp_path / "parent")
    want, got = parent.trainable_parameters(), child.trainable_parameters()
    assert want.keys() == got.keys() and want
    for name in want:
        assert torch.equal(want[name], got[name]), name


def test_a_checkpoint_of_other_weights_is_still_refused(space, minilm, tmp_path):
    """Rank and targets change the weights: a child differing there must not load."""
    from autopeft.candidate import Candidate, ModuleConfig
    from autopeft.exceptions import CandidateError
    from autopeft.methods import build

    parent_p, _ = _an_exploit(space)
    cand = space.to_candidate(parent_p.assignment)
    build(minilm, cand, seed=1).save(tmp_path / "parent")
    (m,) = cand.modules
    for change in ({"rank": 1 if m.params["rank"] != 1 else 2},
                   {"init": "gaussian" if m.params["init"] != "gaussian" else "default"}):
        other = Candidate((ModuleConfig(m.type, {**m.params, **change}, m.layers),),
                          dict(cand.hyper), cand.num_layers)
        with pytest.raises(CandidateError, match="different architecture"):
            build(minilm, other, seed=2).load_adapter_weights(tmp_path / "parent")


def test_without_inheritance_no_weights_travel_but_the_rounds_are_the_same(space):
    """inherit_weights: false (the control of experiments/bench_pbt.py): the same seed
    gives the same configs, members and parents, but no proposal warm-starts, so the fake
    trainer starts every trial from zero; with it on, the same rounds do warm-start."""
    cost = AnalyticObjective(space).cost(space.sample(np.random.default_rng(0)))
    runs = {}
    for inherit in (True, False):
        evaluator = WeightEvaluator(lambda a: 1000 * a["hp.learning_rate"], cost)
        ctrl = make_controller("pbt", space, 7, population_size=4, rounds=4,
                               inherit_weights=inherit)
        driver = Driver(evaluator, parallel=1)
        driver.run(ctrl, 100)
        driver.drain(ctrl)
        assert ctrl.ask() is None and len(driver.proposals) == 16
        runs[inherit] = (driver.proposals, evaluator)
    (on, ev_on), (off, ev_off) = runs[True], runs[False]
    assert sum(p.meta["parent"] is not None for p in off) >= 3  # exploits did happen
    assert all(p.warm_start_from is None for p in off)
    assert all(ev_off.first[n] == 0.0 for n in range(16))
    assert all(p.warm_start_from is not None for p in on[4:])
    assert any(ev_on.first[n] > 0.0 for n in range(4, 16))
    # round 0 has the same rewards either way, so round 1 exploits the same parent with
    # the same explored config (later rounds differ: inherited weights change rewards)
    assert [(p.meta, p.assignment) for p in off[:8]] == [(p.meta, p.assignment)
                                                         for p in on[:8]]


def test_inherit_weights_must_be_a_bool(space):
    from autopeft.exceptions import ConfigError

    with pytest.raises(ConfigError, match="inherit_weights"):
        make_controller("pbt", space, 0, inherit_weights="no")
    assert make_controller("pbt", space, 0).settings["inherit_weights"] is True


def test_a_warm_started_trial_counts_steps_from_the_whole_chain():
    """The runner numbers a warm-started trial's steps after its parent's last report, which
    already counts the parent's own chain: round 3 of a 10-step chain starts at 20, not 10
    (counting only the parent's own steps restarted the numbering after 2 rounds)."""
    from types import SimpleNamespace as NS

    from autopeft.study.runner import _start_step

    def metrics(first, steps):
        return NS(steps=steps, intermediate=((first + 5, 0.5), (first + steps, 0.6)))

    trials = {0: NS(metrics=metrics(0, 10)), 1: NS(metrics=metrics(10, 10)),
              2: NS(metrics=None)}
    storage = NS(get_trial=lambda name, number: trials[number])
    assert _start_step(storage, "s", NS(warm_start_from=None)) == 0
    assert _start_step(storage, "s", NS(warm_start_from=0)) == 10
    assert _start_step(storage, "s", NS(warm_start_from=1)) == 20
    assert _start_step(storage, "s", NS(warm_start_from=2)) == 0   # a parent without metrics
