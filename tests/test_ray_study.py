"""`autopeft search --workers K` end to end: the study loop driving the Ray executor.

The fake evaluator (autopeft.testing.ray_fakes) gives metrics that depend only on the
candidate and the trial seed, and the random controller proposes the same candidates
whatever the results, so a Ray search and a serial search must store the same trials.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from autopeft.cli import main  # noqa: E402
from autopeft.records import TrialState  # noqa: E402
from autopeft.testing import ray_fakes  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def _search(tmp_path: Path, monkeypatch, study: str, *extra: str, factory="deterministic",
            fake: dict | None = None) -> list:
    if ray.is_initialized():
        ray.shutdown()  # the executor must start its own runtime, with this environment
    exp = tmp_path / f"{study}.yaml"
    exp.write_text(f"name: {study}\nmodel: minilm\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPEFT_RAY_FAKE", json.dumps(fake or {}))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rc = main(["search", "--space", "default.yaml", "--experiment", str(exp),
               "--controller", "random", "--seed", "5", "--study", study, "--quiet",
               "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}", *extra],
              evaluator_factory=getattr(ray_fakes, factory))
    assert rc == 0
    from autopeft.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        return storage.get_trials(study)
    finally:
        storage.close()


def test_ray_search_stores_the_same_trials_as_a_serial_search(tmp_path, monkeypatch):
    on_ray = _search(tmp_path, monkeypatch, "on-ray", "--workers", "2", "--trials", "6")
    serial = _search(tmp_path, monkeypatch, "serial", "--executor", "serial", "--trials", "6")
    assert not ray.is_initialized()  # the search shut its runtime down
    assert [t.state for t in on_ray] == [TrialState.COMPLETE] * 6
    assert [t.candidate for t in on_ray] == [t.candidate for t in serial]
    assert [(t.metrics.metric, t.metrics.cost, t.metrics.intermediate) for t in on_ray] == [
        (t.metrics.metric, t.metrics.cost, t.metrics.intermediate) for t in serial]
    assert [t.reward for t in on_ray] == [t.reward for t in serial]
    # each trial names the worker that ran it ("ray:<node>:<pid>"), not the executor
    workers = {t.worker for t in on_ray}
    assert all(w.startswith("ray:") and w != "ray:local" for w in workers), workers
    pids = {int(w.rsplit(":", 1)[1]) for w in workers}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {t.worker for t in serial} == {f"serial:{os.getpid()}"}


def test_a_worker_crash_is_retried_by_the_study(tmp_path, monkeypatch):
    marker = tmp_path / "fired"
    trials = _search(tmp_path, monkeypatch, "crashy", "--workers", "2", "--trials", "4",
                     factory="self_killing", fake={"marker": str(marker), "sleep": 0.2})
    assert marker.exists()  # a worker really died
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert sorted(t.attempts for t in trials) == [1, 1, 1, 2]  # attempts made
