"""The storage contract, run against every backend: a SQLite file and a real PostgreSQL.

Adding a backend means adding one param to autopeft.storage.testing.storage_url.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytest.importorskip("sqlalchemy")

import sqlalchemy as sa  # noqa: E402

from autopeft.exceptions import StorageError, StudyExistsError, StudyNotFoundError  # noqa: E402
from autopeft.records import Cost, Metrics, TrialRecord, TrialState  # noqa: E402
from autopeft.storage import ArtifactRecord, StudyInfo, StudySpec, open_storage  # noqa: E402
from autopeft.storage.testing import pg_database, storage_url  # noqa: E402,F401 (fixtures)


@pytest.fixture
def storage(storage_url):  # noqa: F811
    s = open_storage(storage_url)
    yield s
    s.close()


def study_fields(name: str = "s1", **over) -> dict:
    fields = dict(
        name=name, space_text="modules:\n  lora: {rank: [4, 8]}\n", space_fingerprint="ab" * 32,
        space_source="/spaces/small.yaml",
        experiment={"model": "minilm", "data": {"train": 2000}, "reward": {"lambda": 0.1}},
        controller="tpe", controller_settings={"n_startup": 5, "gamma": 0.25}, seed=2**40 + 7,
        n_trials=20, versions={"autopeft": "0.1.0", "sqlalchemy": "2.1.9"},
        created_at=1_700_000_000.5)
    fields.update(over)
    return fields


def metrics(value: float = 0.8, **over) -> Metrics:
    cost = Cost(trainable_params=1000, base_params=22_000_000, params_ratio=1000 / 22e6,
                base_flops_per_token=4.4e7, extra_flops_per_token=2e3, flops_ratio=2e3 / 4.4e7,
                flops_ratio_merged=0.0, latency_ratio=0.05, mergeable=True)
    fields = dict(metric=value, metric_name="accuracy", cost=cost,
                  intermediate=((10, 0.5), (20, value)), train_loss=0.3, steps=20,
                  train_seconds=1.5, eval_seconds=0.25, checkpoint="/runs/t0",
                  extra={"f1": 0.7, "per_class": [0.1, 0.9]})
    fields.update(over)
    return Metrics(**fields)


def add_trials(storage, name: str, n: int) -> list[TrialRecord]:
    return [storage.create_trial(name, {"rank": 4 + i}, {"modules": [], "num_layers": 6})
            for i in range(n)]


def row_counts(storage) -> dict[str, int]:
    """Rows in every autopeft table, read straight from the database."""
    from autopeft.storage.models import Base

    with storage._engine.connect() as conn:
        return {t: conn.execute(sa.select(sa.func.count()).select_from(Base.metadata.tables[t]))
                .scalar_one() for t in Base.metadata.tables}


# -- studies ---------------------------------------------------------------------------------
def test_create_and_get_study_round_trips_every_field(storage):
    study_id = storage.create_study(**study_fields())
    info = storage.get_study("s1")
    assert isinstance(info, StudyInfo) and info.study_id == study_id
    expected = study_fields()
    for key in ("name", "space_text", "space_fingerprint", "space_source", "experiment",
                "controller", "controller_settings", "seed", "n_trials", "versions",
                "created_at"):
        assert getattr(info, key) == expected[key], key
    assert info.status == "created" and info.updated_at == info.created_at
    assert info.autopeft_version == "0.1.0"
    assert info.counts == {s.value: 0 for s in TrialState}
    assert info.n_stored == 0 and info.n_finished == 0 and info.best_reward is None
    json.dumps(info.to_dict())  # JSON-safe for `autopeft ls --json`
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.status = "running"


def test_create_study_takes_a_spec_and_fills_defaults(storage):
    before = time.time()
    spec = StudySpec(name="from-spec", space_text="x", space_fingerprint="f",
                     experiment={"model": "m"}, controller="random", seed=0)
    storage.create_study(spec)
    info = storage.get_study("from-spec")
    assert info.controller_settings == {} and info.n_trials is None and info.space_source is None
    assert before <= info.created_at <= time.time()
    assert info.versions == {} and info.autopeft_version  # this autopeft's version


def test_study_names_are_unique_and_the_error_names_resume(storage):
    storage.create_study(**study_fields("taken"))
    with pytest.raises(StudyExistsError) as err:
        storage.create_study(**study_fields("taken", controller="random"))
    assert "autopeft resume taken" in str(err.value) and err.value.exit_code == 6
    assert storage.get_study("taken").controller == "tpe"
    assert len(storage.list_studies()) == 1


@pytest.mark.parametrize("bad", ["", "  ", " padded", "x" * 256, None, 7])
def test_bad_study_names_are_refused_before_writing(storage, bad):
    with pytest.raises(StorageError, match="study name"):
        storage.create_study(**study_fields(bad))
    assert storage.list_studies() == []


def test_unknown_study_lists_the_known_names(storage):
    with pytest.raises(StudyNotFoundError, match="holds no studies yet"):
        storage.get_study("nope")
    storage.create_study(**study_fields("alpha"))
    storage.create_study(**study_fields("beta"))
    for call in (lambda: storage.get_study("nope"),
                 lambda: storage.create_trial("nope", {}, {}),
                 lambda: storage.get_trials("nope"),
                 lambda: storage.set_study_status("nope", "running"),
                 lambda: storage.load_controller_state("nope"),
                 lambda: storage.delete_study("nope")):
        with pytest.raises(StudyNotFoundError) as err:
            call()
        assert "'nope'" in str(err.value) and "alpha, beta" in str(err.value)
        assert err.value.exit_code == 2


def test_list_studies_counts_states_and_prefers_feasible_rewards(storage):
    storage.create_study(**study_fields("a", created_at=1.0))
    storage.create_study(**study_fields("b", created_at=2.0))
    add_trials(storage, "a", 5)
    storage.finish_trial("a", 0, TrialState.COMPLETE, metrics(), reward=0.9, feasible=False)
    storage.finish_trial("a", 1, TrialState.COMPLETE, metrics(), reward=0.5, feasible=True)
    storage.finish_trial("a", 2, TrialState.PRUNED, metrics(pruned=True), reward=0.6,
                         feasible=True)
    storage.finish_trial("a", 3, TrialState.FAILED, None, error="nan loss")
    storage.set_trial_running("a", 4, "w0", 0)
    add_trials(storage, "b", 1)
    storage.finish_trial("b", 0, TrialState.COMPLETE, metrics(), reward=0.3, feasible=False)

    a, b = storage.list_studies()
    assert (a.name, b.name) == ("a", "b")
    assert a.counts == {"pending": 0, "running": 1, "complete": 2, "pruned": 1, "failed": 1,
                        "interrupted": 0}
    assert a.n_stored == 5 and a.n_finished == 4
    # autopeft.ranking's rule: the best feasible COMPLETE trial (not the infeasible 0.9,
    # not the pruned 0.6); none when no trial is feasible
    assert a.best_reward == 0.5
    assert b.best_reward is None
    from autopeft.ranking import best

    for info in (a, b):  # the SQL agrees with the one ranking function
        top = best(storage.get_trials(info.name))
        assert info.best_reward == (None if top is None else top.reward)
    assert storage.get_study("a") == a


def test_study_status_and_budget(storage):
    storage.create_study(**study_fields())
    for status in ("running", "interrupted", "running", "stopped", "finished", "failed"):
        storage.set_study_status("s1", status)
        assert storage.get_study("s1").status == status
    assert storage.get_study("s1").updated_at > storage.get_study("s1").created_at
    with pytest.raises(StorageError, match="unknown study status 'done'.*finished"):
        storage.set_study_status("s1", "done")
    storage.set_study_n_trials("s1", 50)
    assert storage.get_study("s1").n_trials == 50
    with pytest.raises(StorageError, match="at least 1"):
        storage.set_study_n_trials("s1", 0)


def test_delete_study_removes_everything_it_owns_and_nothing_else(storage):
    for name in ("gone", "kept"):
        storage.create_study(**study_fields(name))
        add_trials(storage, name, 2)
        storage.add_intermediate(name, 0, 1, 0.5)
        storage.finish_trial(name, 0, TrialState.COMPLETE, metrics(), 0.5, True)
        storage.add_artifact(name, 0, "checkpoint", f"/runs/{name}/0")
        storage.save_controller_state(name, {"n": 1})
        storage.set_study_attr(name, "runs_dir", "/runs")
    before = row_counts(storage)
    storage.delete_study("gone")
    after = row_counts(storage)
    assert all(after[t] * 2 == before[t] for t in before), (before, after)
    assert [s.name for s in storage.list_studies()] == ["kept"]
    assert len(storage.get_trials("kept")) == 2
    with pytest.raises(StudyNotFoundError):
        storage.get_study("gone")
    storage.create_study(**study_fields("gone"))  # the name is free again
    assert storage.get_trials("gone") == []


# -- trials ----------------------------------------------------------------------------------
def test_trials_are_numbered_densely_per_study_from_zero(storage):
    storage.create_study(**study_fields("a"))
    storage.create_study(**study_fields("b"))
    assert [t.number for t in add_trials(storage, "a", 3)] == [0, 1, 2]
    assert [t.number for t in add_trials(storage, "b", 2)] == [0, 1]
    assert add_trials(storage, "a", 1)[0].number == 3
    assert [t.number for t in storage.get_trials("a")] == [0, 1, 2, 3]


def test_create_trial_stores_its_fields_as_a_pending_snapshot(storage):
    storage.create_study(**study_fields())
    first = storage.create_trial("s1", {"rank": 8, "targets": ("q", "v")},
                                 {"modules": [{"type": "lora"}]}, None, {"member": 3})
    second = storage.create_trial("s1", {"rank": 4}, {"modules": []}, warm_start_from=0)
    assert first.state is TrialState.PENDING and first.attempts == 0
    assert first.assignment == {"rank": 8, "targets": ["q", "v"]}  # tuples come back as lists
    assert first.meta == {"member": 3} and first.warm_start_from is None
    assert second.warm_start_from == 0 and second.meta == {}
    assert first.metrics is None and first.started_at is None and first.finished_at is None
    assert storage.get_trial("s1", 0) == first
    assert [r.number for r in storage.get_trials("s1")] == [0, 1]
    with pytest.raises(StorageError, match="no trial number 7"):
        storage.create_trial("s1", {}, {}, warm_start_from=7)


def test_set_trial_running_records_worker_attempt_and_start(storage):
    storage.create_study(**study_fields())
    add_trials(storage, "s1", 1)
    before = time.time()
    record = storage.set_trial_running("s1", 0, "worker-1", 0)
    assert record.state is TrialState.RUNNING and record.worker == "worker-1"
    assert record.attempts == 1 and before <= record.started_at <= time.time()
    retried = storage.set_trial_running("s1", 0, None, attempt=2)  # a crash, then a retry
    assert retried.attempts == 3 and retried.worker is None
    assert storage.get_trial("s1", 0) == retried
    with pytest.raises(StorageError, match="attempt must be >= 0"):
        storage.set_trial_running("s1", 0, "w", -1)


def test_intermediate_reports_are_idempotent_per_step(storage):
    storage.create_study(**study_fields())
    add_trials(storage, "s1", 2)
    storage.add_intermediate("s1", 0, 20, 0.6)
    storage.add_intermediate("s1", 0, 10, 0.4)
    storage.add_intermediate("s1", 0, 10, 0.4)   # the same report again: no second row
    storage.add_intermediate("s1", 0, 20, 0.65)  # a new attempt reports step 20 again
    storage.add_intermediate("s1", 1, 10, 0.3)
    assert storage.get_intermediates("s1", 0) == [(10, 0.4), (20, 0.65)]
    assert storage.get_all_intermediates("s1") == {0: [(10, 0.4), (20, 0.65)], 1: [(10, 0.3)]}
    assert row_counts(storage)["autopeft_trial_intermediates"] == 3


def test_finish_trial_stores_metrics_reward_and_timing(storage):
    storage.create_study(**study_fields())
    add_trials(storage, "s1", 1)
    storage.set_trial_running("s1", 0, "w", 0)
    m = metrics(0.875)
    done = storage.finish_trial("s1", 0, TrialState.COMPLETE, m, reward=0.81, feasible=True,
                                error="params over budget by 0%")
    assert done.state is TrialState.COMPLETE and done.metrics == m
    assert (done.reward, done.feasible, done.error) == (0.81, True, "params over budget by 0%")
    assert done.started_at <= done.finished_at
    assert storage.get_trial("s1", 0) == done
    # metric and cost also have their own columns, for plain SQL
    from autopeft.storage.models import TrialRow
    with storage._engine.connect() as conn:
        metric, cost = conn.execute(sa.select(TrialRow.metric, TrialRow.cost)).one()
    assert metric == 0.875 and cost == m.cost.to_dict()


def test_finish_trial_validates_state_and_metrics(storage):
    storage.create_study(**study_fields())
    add_trials(storage, "s1", 1)
    with pytest.raises(StorageError, match="needs a finished state"):
        storage.finish_trial("s1", 0, TrialState.RUNNING, metrics())
    with pytest.raises(StorageError, match="unknown trial state 'done'"):
        storage.finish_trial("s1", 0, "done", metrics())
    with pytest.raises(StorageError, match="cannot be complete without metrics"):
        storage.finish_trial("s1", 0, TrialState.COMPLETE, None)
    failed = storage.finish_trial("s1", 0, "failed", None, error="CUDA out of memory")
    assert failed.state is TrialState.FAILED and failed.metrics is None
    assert failed.error == "CUDA out of memory" and failed.reward is None


def test_finished_trials_are_immutable(storage):
    storage.create_study(**study_fields())
    add_trials(storage, "s1", 2)
    storage.add_intermediate("s1", 0, 1, 0.5)
    done = storage.finish_trial("s1", 0, TrialState.COMPLETE, metrics(), 0.7, True)
    for call in (lambda: storage.finish_trial("s1", 0, TrialState.FAILED, None, error="x"),
                 lambda: storage.finish_trial("s1", 0, TrialState.COMPLETE, metrics(0.1)),
                 lambda: storage.set_trial_running("s1", 0, "w", 1),
                 lambda: storage.add_intermediate("s1", 0, 2, 0.9)):
        with pytest.raises(StorageError, match="finished trials never change"):
            call()
    assert storage.mark_interrupted("s1", [0, 1]) == [1]
    assert storage.requeue_interrupted("s1") == [1]
    assert storage.get_trial("s1", 0) == done
    assert storage.get_intermediates("s1", 0) == [(1, 0.5)]


def test_get_trials_filters_by_state(storage):
    storage.create_study(**study_fields())
    add_trials(storage, "s1", 4)
    storage.set_trial_running("s1", 1, "w", 0)
    storage.finish_trial("s1", 2, TrialState.COMPLETE, metrics(), 0.5, True)
    storage.finish_trial("s1", 3, TrialState.FAILED, None, error="boom")
    assert [t.number for t in storage.get_trials("s1", [TrialState.PENDING])] == [0]
    assert [t.number for t in storage.get_trials(
        "s1", states=["complete", TrialState.FAILED])] == [2, 3]
    assert storage.get_trials("s1", states=[]) == []
    with pytest.raises(StorageError, match="unknown trial state 'finished'"):
        storage.get_trials("s1", ["finished"])
    with pytest.raises(StorageError, match="no trial number 9; its trials are 0..3"):
        storage.get_trial("s1", 9)


def test_mark_interrupted_and_requeue_on_resume(storage):
    storage.create_study(**study_fields())
    add_trials(storage, "s1", 5)
    storage.set_trial_running("s1", 1, "w1", 0)
    storage.set_trial_running("s1", 2, "w2", 1)
    storage.add_intermediate("s1", 2, 5, 0.2)
    storage.finish_trial("s1", 3, TrialState.COMPLETE, metrics(), 0.5, True)
    # Ctrl-C: the driver marks what was live; a number it does not know changes nothing
    with pytest.raises(StorageError, match=r"no trial\(s\) \[8\]"):
        storage.mark_interrupted("s1", [1, 8])
    assert storage.get_trial("s1", 1).state is TrialState.RUNNING
    assert storage.mark_interrupted("s1", [1, 3]) == [1]
    assert storage.get_trial("s1", 1).state is TrialState.INTERRUPTED
    # resume (trial 2 stayed RUNNING: the driver was killed -9)
    assert storage.requeue_interrupted("s1") == [0, 1, 2, 4]
    states = {t.number: t.state for t in storage.get_trials("s1")}
    assert states == {0: TrialState.PENDING, 1: TrialState.PENDING, 2: TrialState.PENDING,
                      3: TrialState.COMPLETE, 4: TrialState.PENDING}
    two = storage.get_trial("s1", 2)
    assert two.worker is None and two.started_at is None and two.attempts == 2
    assert storage.get_intermediates("s1", 2) == []  # it re-runs from scratch
    assert storage.requeue_interrupted("s1") == [0, 1, 2, 4]  # idempotent


def test_records_are_snapshots(storage):
    storage.create_study(**study_fields())
    record = add_trials(storage, "s1", 1)[0]
    record.assignment["rank"] = 999
    record.candidate["modules"].append("junk")
    assert storage.get_trial("s1", 0).assignment == {"rank": 4}
    storage.finish_trial("s1", 0, TrialState.COMPLETE, metrics(), 0.5, True)
    assert record.state is TrialState.PENDING  # an old snapshot does not follow the store
    info = storage.get_study("s1")
    info.experiment["model"] = "other"
    assert storage.get_study("s1").experiment["model"] == "minilm"
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.state = TrialState.RUNNING


def test_non_finite_floats_are_stored_as_none_on_every_backend(storage):
    storage.create_study(**study_fields())
    add_trials(storage, "s1", 1)
    storage.add_intermediate("s1", 0, 1, float("nan"))
    storage.add_intermediate("s1", 0, 2, float("inf"))
    done = storage.finish_trial("s1", 0, TrialState.COMPLETE,
                                metrics(float("nan"), train_loss=float("-inf")),
                                reward=float("nan"), feasible=False)
    assert [(s, math.isnan(v)) for s, v in storage.get_intermediates("s1", 0)] == [
        (1, True), (2, True)]
    assert done.reward is None and done.metrics.train_loss is None  # optional: None
    assert math.isnan(done.metrics.metric)                            # required: NaN
    assert done.metrics.intermediate[0] == (10, 0.5)
    assert math.isnan(done.metrics.intermediate[1][1])
    assert storage.get_trial("s1", 0).metrics.cost == done.metrics.cost


def test_values_that_are_not_json_are_refused_before_writing(storage):
    storage.create_study(**study_fields())
    with pytest.raises(StorageError, match=r"assignment: the value at rank is a object"):
        storage.create_trial("s1", {"rank": object()}, {})
    with pytest.raises(StorageError, match="key 3 at top level is not a string"):
        storage.create_trial("s1", {3: "x"}, {})
    with pytest.raises(StorageError, match="the value at a.b\\[1\\] is a set"):
        storage.set_study_attr("s1", "k", {"a": {"b": [1, {2}]}})
    assert storage.get_trials("s1") == [] and storage.get_study_attrs("s1") == {}
    assert add_trials(storage, "s1", 1)[0].number == 0  # no number was used up


def test_numpy_scalars_are_stored_as_python_numbers(storage):
    np = pytest.importorskip("numpy")
    storage.create_study(**study_fields(seed=np.int64(5)))
    record = storage.create_trial("s1", {"rank": np.int64(8), "lr": np.float32(0.5),
                                         "on": np.bool_(True)}, {})
    assert record.assignment == {"rank": 8, "lr": 0.5, "on": True}
    assert type(record.assignment["rank"]) is int and storage.get_study("s1").seed == 5


# -- controller state, artifacts, attributes ---------------------------------------------
def test_controller_state_round_trips_and_is_replaced(storage):
    storage.create_study(**study_fields())
    assert storage.load_controller_state("s1") is None
    storage.save_controller_state("s1", {"step": 1, "baseline": 0.5, "h": [[0.1, 0.2]]})
    storage.save_controller_state("s1", {"step": 2, "population": [{"id": 0, "trial": 3}]})
    loaded = storage.load_controller_state("s1")
    assert loaded == {"step": 2, "population": [{"id": 0, "trial": 3}]}
    loaded["step"] = 99
    assert storage.load_controller_state("s1")["step"] == 2
    assert row_counts(storage)["autopeft_controller_states"] == 1


def test_artifacts_point_at_trial_files(storage):
    storage.create_study(**study_fields())
    add_trials(storage, "s1", 3)
    storage.finish_trial("s1", 0, TrialState.COMPLETE, metrics(), 0.5, True)
    first = storage.add_artifact("s1", 0, "checkpoint", "/runs/s1/trial_00000")
    assert isinstance(first, ArtifactRecord) and first.trial_number == 0
    storage.add_artifact("s1", 2, "checkpoint", "/runs/s1/trial_00002")
    storage.add_artifact("s1", 0, "log", "/runs/s1/trial_00000/log.txt")
    storage.add_artifact("s1", 2, "checkpoint", "/runs/s1/trial_00002b")  # replaces
    assert [(a.trial_number, a.kind, a.path) for a in storage.get_artifacts("s1")] == [
        (0, "checkpoint", "/runs/s1/trial_00000"), (0, "log", "/runs/s1/trial_00000/log.txt"),
        (2, "checkpoint", "/runs/s1/trial_00002b")]
    assert [a.kind for a in storage.get_artifacts("s1", 0)] == ["checkpoint", "log"]
    assert storage.get_artifacts("s1", 1) == []
    with pytest.raises(StorageError, match="no trial number 5"):
        storage.add_artifact("s1", 5, "checkpoint", "/x")
    with pytest.raises(StorageError, match="artifact kind"):
        storage.add_artifact("s1", 1, "", "/x")


def test_study_attributes_hold_json(storage):
    storage.create_study(**study_fields())
    storage.set_study_attr("s1", "runs_dir", "/runs")
    storage.set_study_attr("s1", "finalize", {"trials": [3, 1], "test_metric": 0.91})
    storage.set_study_attr("s1", "note", None)
    storage.set_study_attr("s1", "runs_dir", "/elsewhere")
    assert storage.get_study_attrs("s1") == {
        "finalize": {"trials": [3, 1], "test_metric": 0.91}, "note": None,
        "runs_dir": "/elsewhere"}
    with pytest.raises(StorageError, match="attribute key"):
        storage.set_study_attr("s1", "", 1)


# -- transactions and errors ---------------------------------------------------------------
def test_a_failing_scope_rolls_back_everything_it_wrote(storage):
    from autopeft.storage.models import TrialRow

    study_id = storage.create_study(**study_fields())
    add_trials(storage, "s1", 1)
    with pytest.raises(RuntimeError, match="crash mid-transaction"):
        with storage._scope("test", write=True) as session:
            session.execute(sa.update(TrialRow).values(state="running"))
            session.add(TrialRow(study_id=study_id, number=1, state="pending", assignment={},
                                 candidate={}, meta={}, attempts=0, created_at=0.0))
            session.flush()
            raise RuntimeError("crash mid-transaction")
    assert [(t.number, t.state) for t in storage.get_trials("s1")] == [(0, TrialState.PENDING)]


def test_driver_errors_become_one_storage_error_and_roll_back(storage):
    storage.create_study(**study_fields())
    add_trials(storage, "s1", 1)
    with storage._engine.begin() as conn:  # break the database behind storage's back
        conn.exec_driver_sql("DROP TABLE autopeft_artifacts")
    with pytest.raises(StorageError) as err:
        storage.add_artifact("s1", 0, "checkpoint", "/x")
    text = str(err.value)
    assert "add a checkpoint artifact to trial 0 of study 's1'" in text
    assert "autopeft_artifacts" in text and err.value.exit_code == 4
    assert isinstance(err.value.__cause__, sa.exc.SQLAlchemyError)
    with pytest.raises(StorageError, match="delete study 's1'"):
        storage.delete_study("s1")  # fails at the artifacts table after deleting reports
    assert len(storage.get_trials("s1")) == 1  # ... and nothing was deleted


def test_concurrent_writers_get_dense_unique_trial_numbers(storage_url):  # noqa: F811
    n_writers, per_writer = 4, 12
    with open_storage(storage_url) as setup:
        setup.create_study(**study_fields("busy"))
    # two Storage objects (as two driver processes would have), each shared by two threads
    writers = [open_storage(storage_url) for _ in range(2)]
    barrier = threading.Barrier(n_writers)
    numbers: list[list[int]] = [[] for _ in range(n_writers)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            for k in range(per_writer):
                record = writers[i % 2].create_trial("busy", {"w": i, "k": k}, {})
                numbers[i].append(record.number)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for w in writers:
        w.close()
    assert not errors, errors
    total = n_writers * per_writer
    assert sorted(n for ns in numbers for n in ns) == list(range(total))
    for ns in numbers:
        assert ns == sorted(ns)  # each writer sees its own trials in order
    with open_storage(storage_url) as check:
        trials = check.get_trials("busy")
    assert [t.number for t in trials] == list(range(total))
    assert len({(t.assignment["w"], t.assignment["k"]) for t in trials}) == total


CHILD = textwrap.dedent("""
    import sys
    from autopeft.records import Cost, Metrics
    from autopeft.storage import open_storage

    storage = open_storage(sys.argv[1])
    cost = Cost(1, 10, 0.1, 1.0, 0.1, 0.1, 0.0)
    while True:  # the parent kills us with SIGKILL somewhere in here
        t = storage.create_trial("crash", {"i": 1}, {"modules": []})
        storage.set_trial_running("crash", t.number, "w", 0)
        storage.add_intermediate("crash", t.number, 1, 0.5)
        if t.number % 2 == 0:
            storage.finish_trial("crash", t.number, "complete",
                                 Metrics(0.5, "acc", cost), 0.5, True)
        storage.save_controller_state("crash", {"last": t.number})
        print(t.number, flush=True)
""")


def test_kill_9_mid_write_leaves_a_consistent_store_that_resumes(storage_url):  # noqa: F811
    with open_storage(storage_url) as setup:
        setup.create_study(**study_fields("crash"))
    child = subprocess.Popen([sys.executable, "-c", CHILD, storage_url],
                             stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line or int(line) >= 15:
                break
        time.sleep(0.01)  # land the kill somewhere inside the next transactions
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    with open_storage(storage_url) as storage:
        trials = storage.get_trials("crash")
        n = len(trials)
        assert n >= 16 and [t.number for t in trials] == list(range(n))
        for t in trials:
            if t.state is TrialState.COMPLETE:
                assert t.number % 2 == 0 and t.metrics is not None and t.finished_at
            else:
                assert t.state in (TrialState.PENDING, TrialState.RUNNING)
                assert t.metrics is None and t.finished_at is None
        unfinished = [t.number for t in trials if not t.state.finished]
        assert storage.requeue_interrupted("crash") == unfinished
        assert storage.load_controller_state("crash")["last"] >= 15
        assert storage.create_trial("crash", {}, {}).number == n
        if storage_url.startswith("sqlite"):
            with storage._engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_reopening_sees_everything_committed(storage_url):  # noqa: F811
    with open_storage(storage_url) as first:
        first.create_study(**study_fields())
        add_trials(first, "s1", 2)
        first.finish_trial("s1", 1, TrialState.COMPLETE, metrics(), 0.4, True)
        expected = first.get_trials("s1")
    with open_storage(storage_url) as second:
        assert second.get_trials("s1") == expected
        assert math.isclose(second.get_study("s1").created_at, 1_700_000_000.5)
