"""The contract every controller keeps, as reusable checks (optuna/testing style).

    from autopeft.testing.controllers import CONTRACT_CHECKS
    @pytest.mark.parametrize("check", CONTRACT_CHECKS)
    def test_contract(check): check(lambda space, seed, **kw: MyController(space, seed=seed,
                                                                      **kw), space)

A factory is `factory(space, seed, **settings) -> Controller`. Each check drives the
controller with `autopeft.testing.fakes.Driver` (several trials in flight, scripted
failures and pruned trials) against an AnalyticObjective, and raises AssertionError with
a message that says what broke.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from autopeft.records import Proposal
from autopeft.testing.fakes import AnalyticObjective, Driver, objective_driver

Factory = Callable[..., Any]
N = 24


def _driver(space: Any, parallel: int = 3) -> Driver:
    return objective_driver(AnalyticObjective(space, seed=3), parallel=parallel,
                            fail_every=7, prune_every=5)


def _stream(proposals: list[Proposal]) -> list[str]:
    return [json.dumps({"a": p.assignment, "w": p.warm_start_from, "m": p.meta},
                       sort_keys=True) for p in proposals]


def check_same_seed_same_proposals(factory: Factory, space: Any, n: int = N) -> None:
    a = _stream(_driver(space).run(factory(space, 11), n))
    b = _stream(_driver(space).run(factory(space, 11), n))
    assert len(a) == n, f"expected {n} proposals, got {len(a)}"
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, f"same seed, proposal {i} differs:\n{x}\n{y}"


def check_different_seed_differs(factory: Factory, space: Any, n: int = N) -> None:
    pa = _driver(space).run(factory(space, 1), n)
    pb = _driver(space).run(factory(space, 2), n)
    # the standard recipes (meta "recipe") are the same for every seed by design
    pairs = [(x, y) for p, q, x, y in zip(pa, pb, _stream(pa), _stream(pb))
             if not (p.meta.get("recipe") or q.meta.get("recipe"))]
    same = sum(x == y for x, y in pairs)
    assert same < max(1, len(pairs) // 2), (
        f"seeds 1 and 2 gave {same} of {len(pairs)} identical proposals (recipes aside)")


def check_proposals_legal(factory: Factory, space: Any, n: int = N) -> None:
    driver = _driver(space)
    proposals = driver.run(factory(space, 5), n)
    for i, p in enumerate(proposals):
        assert isinstance(p, Proposal), f"ask() returned {p!r}"
        space.validate(p.assignment)  # raises SpaceError with the reason
        json.dumps(dict(p.assignment))
        json.dumps(dict(p.meta))
        if p.warm_start_from is not None:
            finished = {r.number for r in driver.records}
            assert p.warm_start_from in finished, (
                f"proposal {i} warm-starts from trial {p.warm_start_from}, which has not "
                f"finished (finished: {sorted(finished)})")


def check_state_round_trip(factory: Factory, space: Any, n: int = N,
                           at: tuple[int, ...] = (3, 10, 17)) -> None:
    """Save mid-flight (after ask k, trials still running), load into a new controller with
    the same seed, continue: the same stream as without the interruption."""
    whole = _stream(_driver(space).run(factory(space, 9), n))
    assert len(whole) == n, f"expected {n} proposals, got {len(whole)}"
    for k in at:
        driver = _driver(space)
        first = factory(space, 9)
        driver.run(first, k)
        saved = json.loads(json.dumps(first.state_dict()))  # through JSON, as storage does
        second = factory(space, 9)
        second.load_state_dict(saved)
        driver.run(second, n)
        resumed = _stream(driver.proposals)
        for i, (x, y) in enumerate(zip(whole, resumed)):
            assert x == y, (f"after a state round trip at {k}, proposal {i} differs:\n{x}\n"
                            f"{y}")
        assert len(resumed) == n


def check_state_json_safe(factory: Factory, space: Any, n: int = N) -> None:
    c = factory(space, 4)
    driver = _driver(space)
    for step in (0, 5, n):
        driver.run(c, step)
        state = c.state_dict()
        text = json.dumps(state, allow_nan=False)
        assert json.loads(text) == state, "state_dict does not survive a JSON round trip"


def check_catch_up_idempotent(factory: Factory, space: Any, n: int = 12) -> None:
    """Telling the same finished trials again (catch_up after a resume) changes nothing."""
    c = factory(space, 6)
    driver = _driver(space)
    driver.run(c, n)
    driver.drain(c)
    before = json.dumps(c.state_dict(), sort_keys=True)
    assert c.catch_up(driver.records) == 0
    for r in driver.records:
        c.tell(r)
    assert json.dumps(c.state_dict(), sort_keys=True) == before, \
        "telling already-told trials changed the state"


def check_budget_terminates(factory: Factory, space: Any, budget: int = 9) -> None:
    c = factory(space, 8, max_trials=budget)
    driver = _driver(space)
    driver.run(c, 10 * budget)
    driver.drain(c)
    assert len(driver.proposals) <= budget, f"{len(driver.proposals)} > max_trials={budget}"
    assert c.ask() is None, "ask() after the budget must return None"


def check_no_global_rng(factory: Factory, space: Any, n: int = 12) -> None:
    """Library code never draws from (or reseeds) the global random, numpy or torch RNGs."""
    import random
    import sys

    import numpy as np

    def snapshot() -> list[str]:
        out = [repr(random.getstate()), repr(np.random.get_state()[1].tolist())]
        if "torch" in sys.modules:
            out.append(sys.modules["torch"].get_rng_state().numpy().tobytes().hex())
        return out

    factory(space, 0)  # first construction may import torch/optuna
    before = snapshot()
    c = factory(space, 3)
    driver = _driver(space)
    driver.run(c, n)
    driver.drain(c)
    c2 = factory(space, 3)
    c2.load_state_dict(json.loads(json.dumps(c.state_dict())))
    c2.ask()
    assert snapshot() == before, "the controller touched a global RNG"


CONTRACT_CHECKS = [
    check_no_global_rng,
    check_same_seed_same_proposals,
    check_different_seed_differs,
    check_proposals_legal,
    check_state_round_trip,
    check_state_json_safe,
    check_catch_up_idempotent,
    check_budget_terminates,
]


def run_contract(factory: Factory, space: Any) -> None:
    for check in CONTRACT_CHECKS:
        check(factory, space)
