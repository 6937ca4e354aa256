"""The LSTM controller: batches, both learning rules (model-based and direct), that the
model-based rule learns where its untrained control does not, and its state. The shared
contract (determinism, resume, JSON state) runs in test_controllers_contract.py for both
rules."""
from __future__ import annotations

import json

import numpy as np
import pytest

from autopeft.controllers import make_controller
from autopeft.records import Proposal, TrialState
from autopeft.space import load_space
from autopeft.testing.fakes import AnalyticObjective, make_record, objective_driver

torch = pytest.importorskip("torch")
FAST = {"hidden_size": 16, "rollouts": 64, "model_steps": 15}


@pytest.fixture(scope="module")
def space():
    return load_space("default.yaml").bind(num_layers=6, hidden_size=384)


def _cost(space):
    return AnalyticObjective(space).cost({"module": "bitfit", "bitfit.hp.learning_rate": 1e-2})


def _scripted(ctrl, reward_of_assignment, batches, space, start=0):
    number = start
    for _ in range(batches):
        asked = []
        while True:
            p = ctrl.ask()
            if p == "wait":
                break
            asked.append(p)
        assert len(asked) == ctrl.settings["batch_size"]
        for p in asked:
            ctrl.tell(make_record(number, p, reward_of_assignment(p.assignment), _cost(space)))
            number += 1
    return number


def test_lstm_waits_for_its_batch_then_updates(space):
    ctrl = make_controller("lstm", space, 0, batch_size=3, **FAST)
    ps = [ctrl.ask() for _ in range(3)]
    assert all(isinstance(p, Proposal) for p in ps) and ctrl.ask() == "wait"
    cost = _cost(space)
    for i, p in enumerate(ps[:2]):
        ctrl.tell(make_record(i, p, 0.5, cost))
    assert ctrl.ask() == "wait" and ctrl.updates == 0
    ctrl.tell(make_record(2, ps[2], None, None, state=TrialState.FAILED))
    assert ctrl.updates == 0  # the update happens at the next ask, on the whole batch
    assert isinstance(ctrl.ask(), Proposal) and ctrl.updates == 1


def test_trials_told_before_the_first_ask_are_learnt_first(space):
    """The standard recipes are told before the controller's first ask: with at least a
    batch of them, the first proposal already comes from an updated policy."""
    ctrl = make_controller("lstm", space, 0, batch_size=4, **FAST)
    before = {k: v.clone() for k, v in ctrl.policy.state_dict().items()}
    rng = np.random.default_rng(0)
    for n in range(7):
        ctrl.tell(make_record(n, Proposal(space.sample(rng)), 0.1 * n, _cost(space)))
    assert isinstance(ctrl.ask(), Proposal) and ctrl.updates == 1
    assert any(not v.equal(before[k]) for k, v in ctrl.policy.state_dict().items())


# -- learning ----------------------------------------------------------------------------

def _target(space):
    """A clear optimum: one configuration; the reward is the share of decisions that agree
    with it (module first, so a wrong module scores 0)."""
    best = space.sample(np.random.default_rng(42))

    def reward(a):
        if a["module"] != best["module"]:
            return 0.0
        return sum(a[k] == v for k, v in best.items()) / len(best)
    return best, reward


def _policy_value(ctrl, reward, space, n=300):
    """Mean reward of n assignments drawn from the controller's current policy."""
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        codes = ctrl.policy.sample(n, gen)[0]
    return float(np.mean([reward(space.decode(c)) for c in codes.tolist()]))


@pytest.mark.parametrize("learner, settings", [
    ("model", FAST),
    ("direct", {"hidden_size": 16, "learning_rate": 0.05}),
])
def test_the_policy_learns_a_clear_optimum_and_its_untrained_control_does_not(
        space, learner, settings):
    """40 trials (10 batches): the trained policy's expected reward rises far above its
    start; the same controller at learning rate 0 (the benchmark's control) fails the same
    check, so the check can fail."""
    best, reward = _target(space)
    results = {}
    for lr in (settings.get("learning_rate", 0.03), 0.0):
        ctrl = make_controller("lstm", space, 1, learner=learner,
                               **{**settings, "learning_rate": lr})
        start = _policy_value(ctrl, reward, space)
        _scripted(ctrl, reward, 10, space)
        found = space.encode(best) in [c for c, _ in ctrl._told]
        results[lr] = (start, _policy_value(ctrl, reward, space), found)
    (start, trained, found), (start0, control, _) = results.values()
    assert start == pytest.approx(start0)  # same initial policy
    assert trained > max(0.5, 3 * start), results
    assert not control > max(0.5, 3 * start0), results  # the control fails the check
    if learner == "model":  # it measured the single best configuration (1 in ~250)
        assert found, results


def test_model_learner_beats_its_control_on_an_analytic_objective(space):
    """Best reward found in 48 trials, mean over 4 seeds: learning beats lr 0."""
    objective = AnalyticObjective(space, seed=3)

    def best(lr):
        out = []
        for seed in range(4):
            driver = objective_driver(objective)
            ctrl = make_controller("lstm", space, seed, learning_rate=lr, **FAST)
            driver.run(ctrl, 48)
            driver.drain(ctrl)
            out.append(max(r.reward for r in driver.records if r.reward is not None))
        return float(np.mean(out))
    assert best(0.03) > best(0.0) + 0.01


def test_the_update_does_not_draw_from_the_proposal_stream(space):
    """The imagined rollouts use their own generator, so lr 0 (no update at all) gives
    the proposals an update with zero effect would: the control differs from the trained
    controller only by learning."""
    ctrl = make_controller("lstm", space, 4, **FAST)
    state = ctrl._gen.get_state().clone()
    _, reward = _target(space)
    ctrl._told = [(space.encode(a), reward(a)) for a in
                  (space.sample(np.random.default_rng(s)) for s in range(6))]
    ctrl._update_model()
    assert ctrl._gen.get_state().equal(state)


def test_configurations_already_measured_lose_their_pull(space):
    """revisit: false (default) steers the policy away from a configuration it has
    measured, however good: a second draw of it finds nothing new."""
    a = {"module": "bitfit", "bitfit.hp.learning_rate": space.decision(
        "bitfit.hp.learning_rate").options()[2]}
    probs = {}
    for revisit in (False, True):
        ctrl = make_controller("lstm", space, 2, revisit=revisit, **FAST)
        rng = np.random.default_rng(5)
        others = [space.sample(rng) for _ in range(7)]
        for n, x in enumerate([a] + others):
            ctrl.tell(make_record(n, Proposal(x), 0.9 if x == a else 0.3, _cost(space)))
        ctrl.ask()
        probs[revisit] = ctrl.probabilities(a)
    assert probs[True] > 5 * probs[False], probs


def test_lstm_inactive_decisions_get_no_gradient(space):
    """Rollouts that never activate lora.*: their head rows and position embeddings stay
    (learner direct: the model-based rule imagines rollouts of every module)."""
    ctrl = make_controller("lstm", space, 2, batch_size=4, learner="direct")
    pol = ctrl.policy
    idx = [i for i, d in enumerate(space.decisions) if d.name.startswith("lora.")]
    rows = [r for i in idx for r in range(pol.offsets[i], pol.offsets[i] + pol.sizes[i])]
    head, pos = pol.head.weight[rows].clone(), pol.positions.weight[idx].clone()
    module_rows = pol.head.weight[:pol.sizes[0]].clone()
    for n in range(4):  # told without being asked: counts toward the batch all the same
        m = ["bitfit", "ia3"][n % 2]
        a = {"module": m, f"{m}.hp.learning_rate": 1e-2}
        ctrl.tell(make_record(n, Proposal(a), float(n), _cost(space)))
    ctrl.ask()
    assert ctrl.updates == 1
    assert pol.head.weight[rows].equal(head) and pol.positions.weight[idx].equal(pos)
    assert not pol.head.weight[:pol.sizes[0]].equal(module_rows)  # the active ones moved


def test_batched_rollouts_are_legal_assignments(space):
    """Policy.sample follows the space's conditions: every rollout decodes to an
    assignment whose encoding is the rollout itself (inactive decisions -1)."""
    ctrl = make_controller("lstm", space, 0, **FAST)
    codes, logp, ent = ctrl.policy.sample(200, torch.Generator().manual_seed(0))
    assert logp.requires_grad and bool((ent > 0).all())
    seen = set()
    for row in codes.tolist():
        assignment = space.decode(row)
        assert space.encode(assignment) == row
        seen.add(assignment["module"])
    assert len(seen) == len(space.decision("module").options())
    again = ctrl.policy.score(codes)[0]
    assert torch.allclose(again, logp)


@pytest.mark.parametrize("learner", ["model", "direct"])
def test_lstm_state_round_trip_mid_study_gives_the_same_policy(space, learner):
    """Save after 2 batches, load into a new controller, continue: the same weights and
    proposals as without the interruption."""
    _, reward = _target(space)
    settings = {**FAST, "learner": learner, "batch_size": 2}
    whole = make_controller("lstm", space, 5, **settings)
    n = _scripted(whole, reward, 2, space)
    saved = json.loads(json.dumps(whole.state_dict()))
    resumed = make_controller("lstm", space, 5, **settings)
    resumed.load_state_dict(saved)
    own = saved["own"]
    assert {"policy", "optimizer", "generator", "told"} <= set(own)
    assert own["optimizer"]["state"], "Adam moments must be saved"
    assert len(own["told"]) == 4, "the model (and replay) need every told trial"
    for ctrl in (whole, resumed):
        _scripted(ctrl, reward, 2, space, start=n)
    mine = resumed.policy.state_dict()
    for k, a in whole.policy.state_dict().items():
        assert a.equal(mine[k]), k
    assert whole.ask().assignment == resumed.ask().assignment


def test_direct_learner_keeps_its_baseline(space):
    ctrl = make_controller("lstm", space, 5, batch_size=2, learner="direct",
                           advantage="baseline")
    _scripted(ctrl, lambda a: float(a[f"{a['module']}.hp.learning_rate"] * 1000), 3, space)
    ctrl.ask()
    own = json.loads(json.dumps(ctrl.state_dict()))["own"]
    assert isinstance(own["baseline"], float)
