"""The Ray executor on one local Ray runtime shared by this module (2 CPUs).

Fake evaluators from autopeft.testing.ray_fakes stand in for training: their metrics are
a pure function of (candidate, seed), so results can be compared across executors.
"""
from __future__ import annotations

import logging
import re
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray")

from autopeft.exceptions import ConfigError  # noqa: E402
from autopeft.executors.ray_executor import RayExecutor  # noqa: E402
from autopeft.executors.reporting import PrunerReporter  # noqa: E402
from autopeft.executors.serial import SerialExecutor  # noqa: E402
from autopeft.records import EvalRequest  # noqa: E402
from autopeft.testing import ray_fakes  # noqa: E402
from autopeft.testing.ray_fakes import StepPruner, fake_metric  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


WORKER_ID = re.compile(r"^ray:[0-9a-f]{12}:\d+$")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    yield
    ray.shutdown()


def _exp(factory: str = "deterministic", **fake) -> dict:
    # the fake's name rides along in its options; _ray / _serial inject it from Python
    return {"fake": {"steps": 4, "factory": factory, **fake}}


def _factory(exp: dict):
    return getattr(ray_fakes, exp["fake"]["factory"])


def _ray(exp: dict, **kwargs) -> RayExecutor:
    return RayExecutor(exp, evaluator_factory=_factory(exp), **kwargs)


def _req(n: int, exp: dict, *, attempt: int = 0, seed: int = 11) -> EvalRequest:
    return EvalRequest(study="ray-tests", trial_number=n,
                       candidate={"modules": [{"type": "lora", "rank": 2 ** (n % 4)}],
                                  "hyper": {"learning_rate": 1e-3 * (n + 1)}},
                       experiment=exp, seed=seed, attempt=attempt)


def _drain(executor, timeout: float = 60.0) -> list:
    out, deadline = [], time.monotonic() + timeout
    while executor.in_flight:
        assert time.monotonic() < deadline, f"stuck with {executor.in_flight} in flight"
        out.extend(executor.wait(timeout=1.0))
    return sorted(out, key=lambda o: (o.trial_number, o.attempt))


def test_runs_many_trials_on_long_lived_workers(runtime, tmp_path):
    exp = _exp(sleep=0.2, started_dir=str(tmp_path))
    with _ray(exp, workers=2) as ex:
        assert ex.capacity == 2 and ex.in_flight == 0
        assert ex.wait(timeout=0.1) == []  # nothing submitted: returns at once
        assert ex.wait_ready(60)  # both serve trials (on a loaded machine one may lag)
        for n in range(6):
            ex.submit(_req(n, exp))
        assert ex.in_flight == 6  # 2 running or starting, the rest queued in the driver
        outcomes = _drain(ex)
        assert ex.in_flight == 0
    assert [o.trial_number for o in outcomes] == list(range(6))
    for o in outcomes:
        assert o.error is None and o.error_kind is None
        assert WORKER_ID.match(o.worker)
        assert o.metrics.metric == pytest.approx(fake_metric(_req(o.trial_number, exp).candidate,
                                                             11))
        assert len(o.metrics.intermediate) == 4 and not o.metrics.pruned
        assert o.wall_seconds >= 0.2
    assert len({o.worker for o in outcomes}) == 2
    # each worker created its evaluator exactly once and served several trials with it
    assert len(list(tmp_path.glob("created-*"))) == 2


def test_same_requests_give_identical_metrics_on_serial_and_ray(runtime):
    exp = _exp(steps=5)
    requests = [_req(n, exp, seed=3) for n in range(5)]
    serial = SerialExecutor(exp, reporter=PrunerReporter(StepPruner(stop_trials=(2,))),
                            evaluator_factory=_factory(exp))
    for r in requests:
        serial.submit(r)
    expected = _drain(serial)
    serial.shutdown()
    with _ray(exp, workers=2, pruner=StepPruner(stop_trials=(2,))) as ex:
        for r in requests:
            ex.submit(r)
        got = _drain(ex)
    assert [o.metrics for o in got] == [o.metrics for o in expected]
    assert [o.metrics.pruned for o in got] == [False, False, True, False, False]


def test_pruner_actor_sees_every_report_and_stops_trials(runtime):
    exp = _exp(steps=6, sleep=0.1)
    with _ray(exp, workers=2, pruner=StepPruner(stop_trials=(1,), at_step=3)) as ex:
        for n in range(3):
            ex.submit(_req(n, exp))
        outcomes = _drain(ex)
        seen = ex.call_pruner("seen")
        with pytest.raises(AttributeError, match="private"):
            ex.call_pruner("_pruner")
    by_trial = {o.trial_number: o.metrics for o in outcomes}
    assert by_trial[1].pruned and by_trial[1].steps == 3
    assert [s for s, _ in by_trial[1].intermediate] == [1, 2, 3]
    assert by_trial[1].metric == by_trial[1].intermediate[-1][1]
    assert not by_trial[0].pruned and by_trial[0].steps == 6
    # every report of every trial reached the one pruner, with the candidate's cost
    assert sorted((t, s) for t, s, _, _ in seen) == sorted(
        [(0, s) for s in range(1, 7)] + [(1, s) for s in range(1, 4)]
        + [(2, s) for s in range(1, 7)])
    ratios = {t: r for t, _, _, r in seen}
    assert ratios[1] == pytest.approx(by_trial[1].cost.params_ratio)


def test_a_lost_pruner_lets_trials_run_to_the_end(runtime):
    exp = _exp(steps=4)
    with _ray(exp, workers=1, pruner=StepPruner(stop_trials=(0,), at_step=1)) as ex:
        ray.kill(ex._pruner)  # the pruner actor dies mid-search
        ex.submit(_req(0, exp))
        (outcome,) = _drain(ex)
    assert outcome.error_kind is None and not outcome.metrics.pruned
    assert outcome.metrics.steps == 4


@pytest.mark.parametrize("factory, kind, text", [
    ("failing", "trial_failed", "infeasible"),
    ("fatal", "fatal", "base model is missing"),
    ("broken", "crash", "RuntimeError: fake: unexpected failure"),
    ("broken_setup", "fatal", "creating the evaluator failed"),
])
def test_errors_map_to_the_study_policy(runtime, factory, kind, text):
    exp = _exp(factory)
    with _ray(exp, workers=1) as ex:
        ex.submit(_req(5, exp, attempt=1))
        (outcome,) = _drain(ex)
        assert ex.restarts == 0  # an evaluator's exception never kills its worker
    assert (outcome.trial_number, outcome.attempt) == (5, 1)
    assert outcome.metrics is None
    assert outcome.error_kind == kind
    assert text in outcome.error
    if kind == "crash":
        assert "Traceback" in outcome.error
    assert WORKER_ID.match(outcome.worker)


def test_worker_that_kills_itself_is_replaced_and_the_trial_retried(runtime, tmp_path):
    exp = _exp("self_killing", marker=str(tmp_path / "fired"), sleep=0.2)
    with _ray(exp, workers=2) as ex:
        assert ex.wait_ready(60)
        first_pids = {w.pid for w in ex.workers_info()}
        ex.submit(_req(0, exp))
        ex.submit(_req(1, exp))
        outcomes = []
        while ex.in_flight:
            for o in ex.wait(timeout=1.0):
                outcomes.append(o)
                if o.error_kind == "crash":
                    ex.submit(_req(o.trial_number, exp, attempt=o.attempt + 1))
        crashed = [o for o in outcomes if o.error_kind == "crash"]
        assert len(crashed) == 1 and crashed[0].attempt == 0
        assert "died" in crashed[0].error
        dead_pid = int((tmp_path / "fired").read_text())
        assert crashed[0].worker.endswith(f":{dead_pid}")
        done = [o for o in outcomes if o.error_kind is None]
        assert sorted(o.trial_number for o in done) == [0, 1]
        retried = next(o for o in done if o.trial_number == crashed[0].trial_number)
        assert retried.attempt == 1 and not retried.worker.endswith(f":{dead_pid}")
        assert ex.restarts == 1
        assert ex.wait_ready(60)
        pids = {w.pid for w in ex.workers_info()}
        assert len(pids) == 2 and dead_pid not in pids and dead_pid in first_pids


def test_when_no_worker_can_be_replaced_queued_trials_come_back_fatal(runtime, tmp_path):
    exp = _exp("self_killing", marker=str(tmp_path / "fired"))
    with _ray(exp, workers=1, max_restarts=0) as ex:
        ex.submit(_req(0, exp))
        ex.submit(_req(1, exp))
        outcomes = _drain(ex)
    assert [(o.trial_number, o.error_kind) for o in outcomes] == [(0, "crash"), (1, "fatal")]
    assert "no Ray worker is left" in outcomes[1].error


def test_threads_follow_the_cpus_of_a_trial(runtime):
    exp = _exp("env_probe", steps=1)
    with _ray(exp, workers=1, cpus_per_trial=2) as ex:
        ex.submit(_req(0, exp))
        (outcome,) = _drain(ex)
    extra = outcome.metrics.extra
    assert extra["OMP_NUM_THREADS"] == "2" and extra["MKL_NUM_THREADS"] == "2"
    assert extra["torch_threads"] == 2


@pytest.mark.parametrize("kwargs, path", [
    ({"workers": 0}, "--workers"),
    ({"workers": 2, "cpus_per_trial": 0}, "resources.cpus"),
    ({"workers": 2, "gpus_per_trial": -1}, "resources.gpus"),
])
def test_bad_resources_are_refused_before_ray_starts(kwargs, path):
    with pytest.raises(ConfigError, match=re.escape(path)) as err:
        _ray(_exp(), **kwargs)
    assert err.value.fix


def test_importing_autopeft_and_the_fakes_does_not_import_ray():
    code = ("import sys, autopeft, autopeft.executors, autopeft.executors.reporting, "
            "autopeft.executors.serial, autopeft.testing.ray_fakes; "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
