"""The controller contract (autopeft/testing/controllers.py), run against every controller
on the shipped spaces. A new controller adds one line to CONTROLLERS."""
from __future__ import annotations

import json

import numpy as np
import pytest

from autopeft.controllers import Controller, make_controller
from autopeft.records import Proposal
from autopeft.space import load_space
from autopeft.testing.fakes import mixed_space
from autopeft.testing.controllers import (
    CONTRACT_CHECKS,
    check_no_global_rng,
    check_same_seed_same_proposals,
    check_state_round_trip,
)

# name -> settings small enough for fast tests
CONTROLLERS = {
    "random": {},
    "tpe": {"n_startup_trials": 6},
    "motpe": {"n_startup_trials": 6},
    "nsga2": {"population_size": 6},
    "lstm": {"batch_size": 4, "hidden_size": 16, "rollouts": 16, "model_steps": 3},
    "lstm-direct": {"batch_size": 4, "hidden_size": 16, "learner": "direct"},
    "pbt": {"population_size": 4, "rounds": 12},
    # the standard recipes first, then the inner controller (autopeft.controllers.recipes)
    "recipes+random": {"recipes": True},
    "recipes+tpe": {"n_startup_trials": 6, "recipes": True},
    "recipes+lstm": {"batch_size": 4, "hidden_size": 16, "rollouts": 16, "model_steps": 3,
                     "recipes": True},
    "recipes+pbt": {"population_size": 4, "rounds": 12, "recipes": True},
}
SPACES = ["default.yaml", "lora_only.yaml", "autopeft_paper.yaml"]


@pytest.fixture(scope="module", params=SPACES)
def space(request):
    return load_space(request.param).bind(num_layers=6, hidden_size=384)


def factory_for(name):
    def factory(space, seed, **overrides):
        return make_controller(name.split("+")[-1].split("-")[0], space, seed,
                               **{**CONTROLLERS[name], **overrides})
    return factory


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda c: c.__name__[6:])
@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_contract(name, check, space):
    check(factory_for(name), space)


# -- the contract must catch what it claims to catch ---------------------------------

class _GlobalRNG(Controller):
    """Broken on purpose: draws from numpy's global RNG."""

    name = "broken_global"

    def _ask(self):
        return Proposal(self.space.sample(np.random.default_rng(np.random.randint(2**31))))

    def _tell(self, record):
        pass


class _Forgetful(Controller):
    """Broken on purpose: its stream depends on a counter it does not save."""

    name = "broken_forgetful"

    def __init__(self, space, *, seed, **kw):
        super().__init__(space, seed=seed, **kw)
        self.calls = 0

    def _ask(self):
        self.calls += 1
        return Proposal(self.space.sample(np.random.default_rng([self.seed, self.calls])))

    def _tell(self, record):
        pass


@pytest.fixture(scope="module")
def default_space():
    return load_space("default.yaml").bind(num_layers=6)


def test_contract_catches_global_rng(default_space):
    factory = lambda space, seed, **kw: _GlobalRNG(space, seed=seed, **kw)  # noqa: E731
    with pytest.raises(AssertionError, match="global RNG"):
        check_no_global_rng(factory, default_space)
    with pytest.raises(AssertionError, match="same seed"):
        check_same_seed_same_proposals(factory, default_space)


def test_contract_catches_unsaved_state(default_space):
    factory = lambda space, seed, **kw: _Forgetful(space, seed=seed, **kw)  # noqa: E731
    check_same_seed_same_proposals(factory, default_space)  # it is reproducible...
    with pytest.raises(AssertionError, match="state round trip"):
        check_state_round_trip(factory, default_space)  # ...but does not resume


def test_state_names_its_controller(default_space):
    state = make_controller("random", default_space, 1).state_dict()
    assert json.loads(json.dumps(state))["controller"] == "random"


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda c: c.__name__[6:])
@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_contract_on_ranges(name, check):
    check(factory_for(name), mixed_space())
