"""The study engine end to end through the CLI, with the analytic fake evaluator.

The fake makes these fast; the real proxy evaluator is covered in test_search_real.py.
Crash safety is tested for real: a driver subprocess killed with SIGKILL, then resumed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopeft.cli import main as cli_main
from autopeft.testing.study_fakes import analytic

FAKE_CLI = "autopeft.testing.fake_cli"  # `python -m` it with "analytic" first


def main(argv):  # the CLI with the analytic fake injected from Python
    return cli_main(argv, evaluator_factory=analytic)


def _experiment(tmp_path: Path, **opts) -> Path:
    p = tmp_path / "fake.yaml"
    p.write_text("name: fake\nmodel: minilm\n")
    return p


def _plain(argv) -> list[str]:
    """These tests are about the loop, not pruning: a search without --controller runs
    the random controller here (the CLI's default, tpe_asha, prunes trials)."""
    argv = list(argv)
    if argv[:1] == ["search"] and "--controller" not in argv:
        argv += ["--controller", "random"]
    return argv


def _cli(tmp_path, *argv, env_opts=None, monkeypatch=None):
    if monkeypatch is not None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("AUTOPEFT_FAKE", json.dumps(env_opts or {}))
    return main(_plain(argv))


def _trials(db: Path, study: str) -> list[tuple[int, str, float | None]]:
    from autopeft.storage import open_storage

    storage = open_storage(f"sqlite:///{db}")
    try:
        return [(t.number, t.state.value, t.reward) for t in storage.get_trials(study)]
    finally:
        storage.close()


def test_search_runs_exactly_n_trials_and_show_json(tmp_path, monkeypatch, capsys):
    exp = _experiment(tmp_path)
    rc = _cli(tmp_path, "search", "--space", "default.yaml", "--experiment", str(exp),
              "--trials", "5", "--study", "s", "--quiet", monkeypatch=monkeypatch)
    assert rc == 0
    capsys.readouterr()
    assert main(["show", "s", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["number"] for r in rows) == [0, 1, 2, 3, 4]
    assert all(r["state"] == "complete" and r["reward"] is not None for r in rows)
    rewards = [r["reward"] for r in rows]
    assert rewards == sorted(rewards, reverse=True)  # leaderboard order
    assert {"number", "state", "candidate", "metrics", "reward"} <= set(rows[0])
    assert main(["ls"]) == 0
    assert "s " in capsys.readouterr().out


def test_search_on_existing_name_fails_and_names_resume(tmp_path, monkeypatch, capsys):
    exp = _experiment(tmp_path)
    args = ["search", "--space", "lora_only.yaml", "--experiment", str(exp), "--trials", "1",
            "--study", "dup", "--quiet"]
    assert _cli(tmp_path, *args, monkeypatch=monkeypatch) == 0
    capsys.readouterr()
    rc = main(args)
    err = capsys.readouterr().err
    assert rc != 0 and "resume" in err and "dup" in err
    assert len(_trials(tmp_path / "autopeft.db", "dup")) == 1  # nothing more written


def test_resume_refuses_a_changed_space_file(tmp_path, monkeypatch, capsys):
    exp = _experiment(tmp_path)
    from autopeft.resources import resolve

    space = tmp_path / "mine.yaml"
    space.write_text(Path(resolve("lora_only.yaml", "search_spaces")).read_text())
    assert _cli(tmp_path, "search", "--space", str(space), "--experiment", str(exp),
                "--trials", "2", "--study", "drift", "--quiet", monkeypatch=monkeypatch) == 0
    space.write_text(space.read_text().replace("space: lora_only", "space: lora_only2"))
    capsys.readouterr()
    rc = main(["resume", "drift", "--trials", "3"])
    err = capsys.readouterr().err
    assert rc == 7
    assert "changed" in err and "mine.yaml" in err and "fix:" in err
    assert len(_trials(tmp_path / "autopeft.db", "drift")) == 2
    from autopeft.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'autopeft.db'}")
    assert storage.get_study("drift").n_trials == 2  # the refused resume changed nothing
    storage.close()


def test_crashed_trial_is_retried_and_failed_trial_is_kept(tmp_path, monkeypatch):
    exp = _experiment(tmp_path)
    marker = tmp_path / "crashed-once"
    assert _cli(tmp_path, "search", "--space", "default.yaml", "--experiment", str(exp),
                "--trials", "6", "--study", "faults", "--quiet", "--seed", "3",
                env_opts={"crash_marker": str(marker), "fail_if": "bitfit"},
                monkeypatch=monkeypatch) == 0
    from autopeft.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'autopeft.db'}")
    trials = storage.get_trials("faults")
    storage.close()
    assert [t.number for t in trials] == list(range(6))
    # the crash happened in the first trial, which was retried once and completed
    assert marker.read_text() == "0"
    assert trials[0].state.value == "complete" and trials[0].attempts == 2
    # a candidate failure was kept as FAILED, with its reason, and not retried
    failed = [t for t in trials if t.state.value == "failed"]
    assert failed and all("injected failure" in t.error and t.attempts == 1 for t in failed)
    assert all(t.attempts == 1 for t in trials[1:])


def test_a_search_with_no_completed_trial_fails_and_resume_does_not_finish_it(
        tmp_path, monkeypatch, capsys):
    exp = _experiment(tmp_path)
    args = ["search", "--space", "lora_only.yaml", "--experiment", str(exp), "--trials", "2",
            "--study", "allfail", "--quiet"]
    rc = _cli(tmp_path, *args, env_opts={"fail_if": "lora"}, monkeypatch=monkeypatch)
    assert rc == 5 and "no completed trial" in capsys.readouterr().err
    assert main(["resume", "allfail", "--quiet"]) == 5
    from autopeft.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'autopeft.db'}")
    assert storage.get_study("allfail").status == "failed"
    storage.close()


def test_data_errors_exit_3_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f",{i % 2}\n" for i in range(20)))
    exp = tmp_path / "e.yaml"
    exp.write_text(f"model: minilm\ndata: {{source: {data}}}\n")
    rc = main(["search", "--space", "lora_only.yaml", "--experiment", str(exp), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 3 and "data.text" in err and "empty text" in err
    assert not (tmp_path / "autopeft.db").exists()  # not even an empty database
    # a few empty rows are dropped, and the CLI says so
    data.write_text("text,label\n" + "".join(f"t{i} w,{i % 2}\n" for i in range(30))
                    + ",1\n,0\n")
    run = subprocess.run([sys.executable, "-m", FAKE_CLI, "analytic", "search", "--space",
                          "lora_only.yaml", "--experiment", str(exp), "--quiet", "--trials",
                          "1", "--study", "d"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, AUTOPEFT_FAKE="{}"))
    assert run.returncode == 0, run.stderr
    assert "dropped 2 of 32 rows" in run.stderr and "empty text in column 'text'" in run.stderr


def test_bad_inputs_get_distinct_exit_codes_and_write_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["show", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["ls", "--storage", "nosuchdb://x"]) == 4
    assert "nosuchdb" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: minilm\nproxy: {max_steps: -3}\n")
    assert main(["search", "--space", "default.yaml", "--experiment", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "proxy.max_steps" in err
    assert main(["search", "--space", "nope.yaml"]) == 1
    assert "default.yaml" in capsys.readouterr().err  # lists the shipped spaces
    from autopeft.storage import open_storage

    if (tmp_path / "autopeft.db").exists():
        assert open_storage(f"sqlite:///{tmp_path / 'autopeft.db'}").list_studies() == []


def _driver(tmp_path: Path, *argv: str, opts: dict) -> subprocess.Popen:
    env = dict(os.environ, AUTOPEFT_FAKE=json.dumps(opts))
    return subprocess.Popen([sys.executable, "-m", FAKE_CLI, "analytic", *_plain(argv)],
                            cwd=tmp_path,
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_finished(db: Path, study: str, n: int, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                done = [r for r in _trials(db, study) if r[1] == "complete"]
            except Exception:  # noqa: BLE001 - the study may not exist yet
                done = []
            if len(done) >= n:
                return
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    raise AssertionError("driver made no progress")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_driver_resumes_to_exactly_n_trials(tmp_path, sig):
    exp = _experiment(tmp_path)
    db = tmp_path / "autopeft.db"
    n = 8
    proc = _driver(tmp_path, "search", "--space", "default.yaml", "--experiment", str(exp),
                   "--trials", str(n), "--study", "k", opts={"sleep": 0.6})
    _wait_for_finished(db, "k", 3, proc)
    time.sleep(0.25)  # land inside a running trial
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0].decode()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, out
        assert "autopeft resume k" in out
    before = {r[0]: r for r in _trials(db, "k") if r[1] == "complete"}
    assert 3 <= len(before) < n
    states = {r[1] for r in _trials(db, "k")}
    if sig == signal.SIGINT:
        assert "running" not in states  # Ctrl-C marks live trials interrupted
    resumed = subprocess.run([sys.executable, "-m", FAKE_CLI, "analytic", "resume", "k"],
                             cwd=tmp_path,
                             env=dict(os.environ, AUTOPEFT_FAKE='{"sleep": 0.05}'),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    after = _trials(db, "k")
    assert [r[0] for r in after] == list(range(n))  # no gap, no duplicate
    assert all(r[1] == "complete" for r in after)
    for number, row in before.items():  # finished trials are untouched
        assert after[number] == row


def test_preset_pruner_stops_trials_and_is_replayed_on_resume(tmp_path, monkeypatch, capsys):
    exp = _experiment(tmp_path)
    opts = {"steps": 450, "checkpoints": 9}
    assert _cli(tmp_path, "search", "--space", "default.yaml", "--experiment", str(exp),
                "--controller", "tpe_asha", "--trials", "12", "--study", "p", "--quiet",
                env_opts=opts, monkeypatch=monkeypatch) == 0
    rows = _trials(tmp_path / "autopeft.db", "p")
    assert {r[1] for r in rows} == {"complete", "pruned"}
    assert main(["resume", "p", "--trials", "16", "--quiet"]) == 0
    rows = _trials(tmp_path / "autopeft.db", "p")
    assert [r[0] for r in rows] == list(range(16))
    capsys.readouterr()
    main(["show", "p", "--json"])
    pruned = [r for r in json.loads(capsys.readouterr().out) if r["state"] == "pruned"]
    # a pruned trial stopped before the last checkpoint and its reports were stored
    assert pruned and all(len(r["metrics"]["intermediate"]) < 9 for r in pruned)
