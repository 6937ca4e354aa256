"""The study lifecycle without the CLI: plan/create, run, a driver killed mid-way, resume,
exactly-N, the failure statuses, and the controller restored from the stored study.

A scripted in-process executor stands in for the workers and a throwaway SQLite database
for the storage, so every test runs the real StudyRunner and the real storage.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopeft.exceptions import ConfigError, ExperimentError, FatalError, SpaceDriftError
from autopeft.executors.base import Executor, Outcome
from autopeft.records import Metrics, TrialState
from autopeft.resources import resolve
from autopeft.storage import open_storage
from autopeft.study import (
    ControllerProtocolError,
    StudyFailedError,
    StudyRunner,
    create_study,
    load_context,
    plan_study,
    restore_controller,
    resume_study,
    trial_seed,
)
from autopeft.testing.study_fakes import analytic_cost, analytic_metric

SPACE = "lora_only.yaml"


class ScriptedExecutor(Executor):
    """Runs `capacity` trials at a time in-process with the analytic fake metric.

    kinds: trial number -> "trial_failed" | "fatal" | "crash" (every attempt) for scripted
    failures. kill_after: after that many outcomes, `wait` raises KeyboardInterrupt, as a
    driver killed with Ctrl-C mid-way. Records every request it was given.
    """

    def __init__(self, capacity: int = 1, kinds: dict[int, str] | None = None,
                 kill_after: int | None = None) -> None:
        self._capacity = capacity
        self.kinds = dict(kinds or {})
        self.kill_after = kill_after
        self.requests: list = []
        self.live: list = []
        self.outcomes = 0
        self.shut = False

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_flight(self) -> int:
        return len(self.live)

    def submit(self, request) -> None:
        self.requests.append(request)
        self.live.append(request)

    def wait(self, timeout=None) -> list[Outcome]:
        if self.kill_after is not None and self.outcomes >= self.kill_after:
            raise KeyboardInterrupt
        if not self.live:
            return []
        r = self.live.pop(0)
        self.outcomes += 1
        kind = self.kinds.get(r.trial_number)
        if kind is not None:
            return [Outcome(r.trial_number, r.attempt, error=f"scripted {kind}",
                            error_kind=kind)]
        m = analytic_metric(r.candidate)
        metrics = Metrics(metric=m, metric_name="accuracy", cost=analytic_cost(r.candidate),
                          intermediate=((10, m),), steps=10)
        return [Outcome(r.trial_number, r.attempt, metrics=metrics, worker="scripted")]

    def shutdown(self) -> None:
        self.live.clear()
        self.shut = True


def factory_of(executor: ScriptedExecutor):
    def make(experiment, pruner):
        return executor
    return make


@pytest.fixture
def storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing of the working directory may leak in
    s = open_storage(f"sqlite:///{tmp_path / 'lifecycle.db'}")
    yield s
    s.close()


def _create(storage, name="s", n=6, controller="random", **kw) -> str:
    return create_study(storage, name, space=kw.pop("space", SPACE),
                        experiment=kw.pop("experiment", "default.yaml"),
                        controller=controller, n_trials=n, seed=kw.pop("seed", 3), **kw)


def _run(storage, name, executor=None, **kw):
    executor = executor or ScriptedExecutor()
    return resume_study(storage, name, executor_factory=factory_of(executor), **kw).run()


def _states(storage, name) -> list[str]:
    return [t.state.value for t in storage.get_trials(name)]


def test_create_then_run_gives_exactly_n_trials(storage):
    name = _create(storage, n=5)
    info = storage.get_study(name)
    assert info.status == "created" and _states(storage, name) == []
    executor = ScriptedExecutor()
    progress = _run(storage, name, executor)
    assert _states(storage, name) == ["complete"] * 5
    assert progress.finished == progress.complete == 5
    assert storage.get_study(name).status == "finished"
    assert executor.shut  # the runner owns the executor it was given
    state = storage.load_controller_state(name)
    assert state["controller"] == "random" and state["told"] == [0, 1, 2, 3, 4]


def test_the_study_seed_drives_trials_and_the_stored_experiment(storage):
    name = _create(storage, n=2, seed=7)
    assert storage.get_study(name).experiment["seed"] == 7  # the model head's init seed
    executor = ScriptedExecutor()
    _run(storage, name, executor)
    assert [r.seed for r in executor.requests] == [trial_seed(7, 0), trial_seed(7, 1)]
    assert all(r.experiment["seed"] == 7 for r in executor.requests)


def _assignments(storage, name) -> list[str]:
    return [json.dumps(t.assignment, sort_keys=True) for t in storage.get_trials(name)]


def test_killed_mid_way_then_resumed_continues_the_same_stream(storage):
    whole = _create(storage, "whole", n=8, controller="tpe")
    _run(storage, whole, ScriptedExecutor(capacity=2))
    part = _create(storage, "part", n=8, controller="tpe")
    with pytest.raises(KeyboardInterrupt):
        _run(storage, part, ScriptedExecutor(capacity=2, kill_after=3))
    assert storage.get_study(part).status == "interrupted"
    before = {t.number: t for t in storage.get_trials(part) if t.state.finished}
    assert len(before) == 3
    assert set(_states(storage, part)) == {"complete", "interrupted"}
    # the controller comes back exactly as saved, and is told nothing twice
    ctx = load_context(storage, part)
    restored = restore_controller(storage, part, ctx)
    assert restored.state_dict() == storage.load_controller_state(part)

    _run(storage, part, ScriptedExecutor(capacity=2))
    after = storage.get_trials(part)
    assert [t.number for t in after] == list(range(8))  # no gap, no duplicate
    assert _states(storage, part) == ["complete"] * 8
    for number, t in before.items():
        assert after[number] == t  # finished trials are untouched
    assert _assignments(storage, part) == _assignments(storage, whole)


def test_without_a_saved_state_the_controller_is_rebuilt(storage, tmp_path):
    import sqlite3

    name = _create(storage, n=4, controller="tpe")
    _run(storage, name)
    ctx = load_context(storage, name)
    from_state = restore_controller(storage, name, ctx)
    with sqlite3.connect(tmp_path / "lifecycle.db") as db:  # the state is lost
        db.execute("DELETE FROM autopeft_controller_states")
    assert storage.load_controller_state(name) is None
    rebuilt = restore_controller(storage, name, ctx)
    assert rebuilt.told == from_state.told == {0, 1, 2, 3}
    assert rebuilt.ask().assignment == from_state.ask().assignment  # tpe: exact


def test_queued_interrupted_trials_never_overshoot_the_budget(storage):
    name = _create(storage, n=6)
    with pytest.raises(KeyboardInterrupt):
        _run(storage, name, ScriptedExecutor(capacity=3, kill_after=2))
    assert _states(storage, name).count("complete") == 2
    assert _states(storage, name).count("interrupted") == 3
    _run(storage, name, n_trials=3)  # one more, though three interrupted trials wait
    states = _states(storage, name)
    assert states.count("complete") == 3
    assert states.count("pending") == 2  # kept for a later resume with a larger budget
    assert storage.get_study(name).status == "finished"
    _run(storage, name, n_trials=6)
    assert _states(storage, name) == ["complete"] * 5 + ["complete"]


def test_a_fatal_error_fails_the_study_and_resume_does_not_finish_it(storage):
    name = _create(storage, n=1)
    with pytest.raises(FatalError, match="fatal"):
        _run(storage, name, ScriptedExecutor(kinds={0: "fatal"}))
    assert storage.get_study(name).status == "failed"
    assert _states(storage, name) == ["failed"]
    with pytest.raises(StudyFailedError, match="no completed trial"):
        _run(storage, name)
    assert storage.get_study(name).status == "failed"


def test_a_search_where_every_trial_fails_is_not_a_success(storage):
    name = _create(storage, n=3)
    with pytest.raises(StudyFailedError, match="3 failed"):
        _run(storage, name, ScriptedExecutor(kinds={0: "trial_failed", 1: "trial_failed",
                                                     2: "trial_failed"}))
    assert storage.get_study(name).status == "failed"


def test_a_crash_is_retried_then_failed(storage):
    name = _create(storage, n=2)
    executor = ScriptedExecutor(kinds={0: "crash"})
    resume_study(storage, name, executor_factory=factory_of(executor), max_retries=2).run()
    t0, t1 = storage.get_trials(name)
    assert t0.state is TrialState.FAILED and t0.attempts == 3  # two retries
    assert [r.attempt for r in executor.requests if r.trial_number == 0] == [0, 1, 2]
    assert t1.state is TrialState.COMPLETE and t1.attempts == 1


class _Waits:
    """A broken controller: always "wait"."""

    name = "waits"
    preset = None

    def ask(self):
        return "wait"

    def state_dict(self):
        return {}


def test_a_controller_waiting_with_nothing_running_is_a_controller_bug(storage):
    name = _create(storage, n=2)
    runner = StudyRunner(storage, load_context(storage, name), _Waits(), ScriptedExecutor())
    with pytest.raises(ControllerProtocolError, match="'wait' with no trial running"):
        runner.run()
    assert storage.get_study(name).status == "failed"


def test_a_refused_resume_changes_nothing(storage, tmp_path):
    space = tmp_path / "mine.yaml"
    space.write_text(Path(resolve(SPACE, "search_spaces")).read_text())
    name = _create(storage, n=2, space=str(space))
    _run(storage, name)
    with pytest.raises(ConfigError, match="below the 2 finished"):
        resume_study(storage, name, executor_factory=factory_of(ScriptedExecutor()),
                     n_trials=1)
    space.write_text(space.read_text().replace("space: lora_only", "space: lora_only2"))
    with pytest.raises(SpaceDriftError, match="changed"):
        resume_study(storage, name, executor_factory=factory_of(ScriptedExecutor()),
                     n_trials=5)
    info = storage.get_study(name)
    assert info.n_trials == 2 and info.status == "finished"
    assert len(storage.get_trials(name)) == 2


def test_resume_uses_the_stored_preset_not_a_file_in_the_working_directory(storage,
                                                                            tmp_path):
    preset = tmp_path / "mine" / "fast_tpe.yaml"
    preset.parent.mkdir()
    preset.write_text("controller: tpe\nsettings: {n_startup_trials: 3}\n"
                      "pruner: {type: asha, min_resource: 5}\n")
    name = _create(storage, n=2, controller=str(preset))
    _create(storage, "shipped", n=2, controller="tpe")
    assert storage.get_study(name).controller == str(preset.resolve())  # as `ls` shows
    assert storage.get_study("shipped").controller == "tpe"
    preset.write_text("controller: random\n")          # the file changes afterwards...
    Path("tpe.yaml").write_text("controller: random\n")  # ...and a same-named file appears
    for study, startup, pruner in ((name, 3, "asha"), ("shipped", 10, None)):
        ctrl = restore_controller(storage, study, load_context(storage, study))
        assert ctrl.name == "tpe" and ctrl.settings["n_startup_trials"] == startup
        assert (ctrl.preset.pruner or {}).get("type") == pruner


def _csv(tmp_path: Path, rows: list[tuple[str, str]], header=("text", "label"),
         splits=(2, 2)) -> Path:
    import csv

    path = tmp_path / "data.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"model: minilm\ndata: {{source: {path}, validation: {splits[0]}, "
                   f"test: {splits[1]}}}\n")
    return exp


LABEL, CATEGORY = ("text", "label"), ("text", "category")


@pytest.mark.parametrize("rows,header,splits,where,words", [
    ([("a b", "x"), ("c d", "y")] * 10, CATEGORY, (2, 2), "data.label", "not in the data"),
    ([("a b", "x")] * 20, LABEL, (2, 2), "data.label", "distinct value"),
    ([("", "x"), ("  ", "y")] * 10, LABEL, (2, 2), "data.text", "empty text"),
    # the one 'y' lands in validation: no 'y' to train on
    ([("a b", "x")] * 3 + [("c d", "y")], LABEL, (2, 1), "data", "class 'y' has 1"),
])
def test_data_errors_are_found_before_the_study_is_created(storage, tmp_path, rows, header,
                                                            splits, where, words):
    exp = _csv(tmp_path, rows, header, splits)
    with pytest.raises(ExperimentError) as err:
        _create(storage, n=2, experiment=str(exp))
    assert err.value.path == where and words in str(err.value)
    assert err.value.exit_code == 3
    assert storage.list_studies() == []


def test_dropped_empty_rows_are_reported(tmp_path, caplog):
    exp = _csv(tmp_path, [("a b", "x"), ("c d", "y"), ("", "x")] * 6)
    with caplog.at_level("WARNING", logger="autopeft.taskdata"):
        plan = plan_study("p", space=SPACE, experiment=str(exp), n_trials=1)
    assert plan.name == "p"
    assert "dropped 6 of 18 rows" in caplog.text and "empty text in column 'text'" in caplog.text


class SlowExecutor(ScriptedExecutor):
    """Each outcome takes `delay` seconds of wall clock."""

    def __init__(self, delay: float, **kw) -> None:
        super().__init__(**kw)
        self.delay = delay

    def wait(self, timeout=None):
        import time

        if self.live:
            time.sleep(self.delay)
        return super().wait(timeout)


def test_a_time_budget_stops_new_trials_and_resume_continues(storage):
    name = _create(storage, n=10)
    progress = _run(storage, name, SlowExecutor(0.25), time_budget_s=0.6)
    done = progress.finished
    assert 1 <= done < 10  # no trial started after the budget; the one running finished
    assert _states(storage, name) == ["complete"] * done  # nothing left running or queued
    assert storage.get_study(name).status == "stopped"
    assert progress.last_event == "stopped: time budget spent"
    _run(storage, name)  # resume without a budget: the study goes on to its 10 trials
    assert _states(storage, name) == ["complete"] * 10
    assert storage.get_study(name).status == "finished"
    with pytest.raises(ValueError, match="positive"):
        _run(storage, name, time_budget_s=0)


def test_the_budget_flag_reads_durations_and_refuses_nonsense():
    import argparse

    from autopeft.cli.args import duration

    assert [duration(t) for t in ("90", "90s", "20m", "1.5h")] == [90, 90, 1200, 5400]
    for bad in ("0", "-5m", "abc", "", "nanm", "infh"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive duration"):
            duration(bad)
