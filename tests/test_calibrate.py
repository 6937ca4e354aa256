"""`autopeft calibrate`: full-fidelity retraining of k proxy trials, apart from the search.

Fast tests use tests/calibrate_fakes.py (a fake that knows both fidelities); crash safety
is tested with a real calibrate subprocess killed with SIGKILL; one slow test runs the
whole thing on the real MiniLM (search, calibrate, calibrate a larger k, finalize).
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
import yaml

from autopeft.calibrate import (
    agreement,
    calibrate_study,
    full_experiment,
    load_records,
    reusable,
    select,
)
from autopeft.cli import main as cli_main
from autopeft.records import TrialRecord, TrialState
from calibrate_fakes import fidelity

TESTS = Path(__file__).resolve().parent


def main(argv):  # the CLI with the two-fidelity fake injected from Python
    return cli_main(argv, evaluator_factory=fidelity)


def _experiment(tmp_path: Path) -> Path:
    p = tmp_path / "fake.yaml"
    p.write_text("name: fake\nmodel: minilm\n")
    return p


def _search(tmp_path, monkeypatch, n=8, name="s", opts=None):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPEFT_FAKE", json.dumps(opts or {}))
    assert main(["search", "--space", "default.yaml", "--experiment",
                 str(_experiment(tmp_path)), "--trials", str(n), "--study", name,
                 "--quiet", "--seed", "3", "--no-recipes"]) == 0


def _storage(tmp_path):
    from autopeft.storage import open_storage

    return open_storage(f"sqlite:///{tmp_path / 'autopeft.db'}")


def _trial(number, reward):
    return TrialRecord(number=number, state=TrialState.COMPLETE, assignment={},
                       candidate={}, reward=reward, feasible=True)


# -- pure parts ----------------------------------------------------------------------------
def test_select_takes_the_top_half_then_spreads_the_rest_deterministically():
    ranked = [_trial(i, 1 - i / 100) for i in range(20)]
    picked = [t.number for t in select(ranked, 6)]
    assert picked[:3] == [0, 1, 2]
    # the centres of 3 equal slices of the 17 trials below the top 3
    assert picked[3:] == [5, 11, 17]
    assert [t.number for t in select(ranked, 6)] == picked
    assert [t.number for t in select(ranked, 5)] == [0, 1, 2, 7, 15]
    assert [t.number for t in select(ranked[:4], 6)] == [0, 1, 2, 3]  # all when <= k


def test_agreement_tau_regret_and_top3_recall():
    a = agreement([0.9, 0.8, 0.7, 0.6], [0.80, 0.85, 0.70, 0.60])
    assert a.tau == pytest.approx(4 / 6)  # one swapped pair of six
    assert a.proxy_best == 0 and a.full_best == 1
    assert a.regret_points == pytest.approx(5.0)
    assert a.top3_recall
    b = agreement([0.9, 0.8, 0.7, 0.6], [0.6, 0.7, 0.8, 0.9])
    assert b.tau == pytest.approx(-1.0) and not b.top3_recall
    assert b.regret_points == pytest.approx(30.0)


# -- through the CLI, with the fake ------------------------------------------------------------
def test_calibrate_stores_full_results_apart_from_the_search(tmp_path, monkeypatch, capsys):
    _search(tmp_path, monkeypatch)
    capsys.readouterr()
    storage = _storage(tmp_path)
    before = storage.get_trials("s")
    assert main(["calibrate", "s", "--k", "4"]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last.startswith("kendall_tau=1.000 top1_regret=0.00 n=4"), out
    assert "warning" not in out  # the fake's full order is the proxy's order

    records = load_records(storage, "s")
    ranked = sorted((t for t in before if t.feasible), key=lambda t: -t.reward)
    assert sorted(records) == sorted(t.number for t in select(ranked, 4))
    for number, r in records.items():
        assert r.status == "complete" and r.fidelity == "full"
        assert r.metrics.test_metric is not None and r.metrics.extra["n_validation"] == 500
        assert r.proxy_reward == storage.get_trial("s", number).reward
        assert Path(r.metrics.checkpoint).is_dir()
    # not trials: nothing added, nothing changed, the budget is untouched
    assert storage.get_trials("s") == before
    assert storage.get_study("s").n_finished == 8
    assert main(["resume", "s", "--trials", "10", "--quiet"]) == 0
    assert [t.number for t in storage.get_trials("s")] == list(range(10))  # exactly 2 more
    capsys.readouterr()
    assert main(["show", "s"]) == 0
    shown = capsys.readouterr().out
    assert "full-fidelity calibration" in shown
    assert all(f"\n{n:>6} complete" in shown for n in records)
    assert main(["report", "s", "--out", "rep"]) == 0
    assert "Full-fidelity calibration" in (tmp_path / "rep" / "report.html").read_text()


def test_a_second_run_trains_nothing_again_and_a_larger_k_trains_only_the_new(
        tmp_path, monkeypatch):
    from calibrate_fakes import FidelityFake

    _search(tmp_path, monkeypatch, n=10)
    storage = _storage(tmp_path)
    fake = FidelityFake({})
    first = calibrate_study(storage, "s", k=3, evaluator=fake)
    assert len(first.trained) == 3 and first.reused == []
    stored = load_records(storage, "s")
    again = calibrate_study(storage, "s", k=3, evaluator=fake)
    assert again.trained == [] and sorted(again.reused) == sorted(stored)
    assert load_records(storage, "s") == stored  # untouched, not duplicated
    more = calibrate_study(storage, "s", k=5, evaluator=fake)
    assert set(more.reused) <= set(stored) and len(more.trained) + len(more.reused) == 5
    assert len(fake.calls) == 3 + len(more.trained)
    assert all(c[1] == "full" for c in fake.calls)


def test_a_proxy_that_ranks_wrongly_warns_with_the_studys_own_numbers(tmp_path, monkeypatch,
                                                                       capsys):
    _search(tmp_path, monkeypatch, opts={"invert": True})
    capsys.readouterr()
    assert main(["calibrate", "s", "--k", "4"]) == 0
    out = capsys.readouterr().out
    assert "kendall_tau=-1.000" in out
    warn = [line for line in out.splitlines() if "warning:" in line or "suggestion:" in line]
    assert warn and "tau -1.00" in warn[0]
    # the fake's proxy curves end on their best point: the advice is to train longer,
    # with the experiment's own proxy.max_steps (150 by default) doubled
    assert any("still rising" in w and "proxy.max_steps 150 -> 300" in w for w in warn), warn


def test_finalize_reuses_only_a_matching_complete_record(tmp_path, monkeypatch):
    from calibrate_fakes import FidelityFake

    _search(tmp_path, monkeypatch, n=4)
    storage = _storage(tmp_path)
    calibrate_study(storage, "s", k=2, evaluator=FidelityFake({}))
    experiment = full_experiment(storage.get_study("s").experiment)
    number = next(iter(load_records(storage, "s")))
    rec = reusable(storage, "s", number, experiment)
    assert rec is not None and rec.metrics.test_metric is not None
    other = dict(experiment, full={**experiment["full"], "max_steps": 7, "epochs": None})
    assert reusable(storage, "s", number, other) is None  # another schedule: retrain
    uncalibrated = next(n for n in range(4) if n not in load_records(storage, "s"))
    assert reusable(storage, "s", uncalibrated, experiment) is None
    import shutil

    shutil.rmtree(rec.metrics.checkpoint)
    assert reusable(storage, "s", number, experiment) is None  # no weights left to export


def test_bad_calls_exit_with_the_readme_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    _search(tmp_path, monkeypatch, n=3)
    capsys.readouterr()
    assert main(["calibrate", "s", "--k", "1"]) == 1
    assert "--k N with N >= 2" in capsys.readouterr().err
    _search(tmp_path, monkeypatch, n=1, name="one")
    capsys.readouterr()
    assert main(["calibrate", "one"]) == 8
    assert "autopeft resume one" in capsys.readouterr().err
    assert load_records(_storage(tmp_path), "one") == {}  # nothing written


def test_ctrl_c_marks_the_running_one_interrupted_and_a_rerun_finishes_it(tmp_path,
                                                                          monkeypatch):
    from calibrate_fakes import FidelityFake

    class StopSecond(FidelityFake):
        def evaluate(self, request, reporter):
            if len(self.calls) == 1:
                self.calls.append((request.trial_number, "stopped"))
                raise KeyboardInterrupt
            return super().evaluate(request, reporter)

    _search(tmp_path, monkeypatch, n=6)
    storage = _storage(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        calibrate_study(storage, "s", k=3, evaluator=StopSecond({}))
    stopped = load_records(storage, "s")
    assert sorted(r.status for r in stopped.values()) == ["complete", "interrupted"]
    result = calibrate_study(storage, "s", k=3, evaluator=FidelityFake({}))
    victim = next(n for n, r in stopped.items() if r.status == "interrupted")
    assert victim in result.trained and len(result.trained) == 2 and len(result.reused) == 1
    assert load_records(storage, "s")[victim].attempts == 2


# -- kill -9 ---------------------------------------------------------------------------------
def test_killed_calibration_continues_without_losing_or_duplicating(tmp_path, monkeypatch):
    _search(tmp_path, monkeypatch, n=8)
    started = tmp_path / "started"
    started.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")]),
        AUTOPEFT_FAKE=json.dumps({"sleep_full": 3.0, "started_dir": str(started)}))
    proc = subprocess.Popen([sys.executable, "-m", "calibrate_fakes", "calibrate", "s",
                             "--k", "4"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    storage = _storage(tmp_path)
    deadline = time.monotonic() + 120
    while len(list(started.iterdir())) < 3:  # two done, the third training now
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "calibrate made no progress"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the third retraining (3 s) has just begun
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed = load_records(storage, "s")
    states = sorted(r.status for r in killed.values())
    assert states == ["complete", "complete", "running"], states
    victim = next(n for n, r in killed.items() if r.status == "running")

    env["AUTOPEFT_FAKE"] = json.dumps({"started_dir": str(started)})
    rerun = subprocess.run([sys.executable, "-m", "calibrate_fakes", "calibrate", "s",
                            "--k", "4"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "kendall_tau=" in rerun.stdout.splitlines()[-1]
    after = load_records(storage, "s")
    assert len(after) == 4 and all(r.status == "complete" for r in after.values())
    for number, r in killed.items():
        if r.status == "complete":
            assert after[number] == r  # kept as it was, not retrained
    assert after[victim].attempts == 2
    runs = [p.name.split("-")[1] for p in started.iterdir()]
    assert sorted(runs.count(str(n)) for n in after) == [1, 1, 1, 2]  # only the victim twice
    assert runs.count(str(victim)) == 2
    assert len(storage.get_trials("s")) == 8  # no trial row added


# -- the real model ----------------------------------------------------------------------------
@pytest.mark.slow
def test_calibrate_then_finalize_on_the_real_model(tmp_path, monkeypatch, capsys):
    exp = {
        "name": "tiny-real", "model": "minilm", "data": {"source": "builtin:trec6"},
        "proxy": {"train_examples": 240, "max_steps": 12, "validation_examples": 120,
                  "eval_every": 6},
        "full": {"train_examples": 320, "epochs": None, "max_steps": 20,
                 "validation_examples": 120, "eval_every": 10, "patience": 0},
        "optimizer": {"learning_rate": 3.0e-3, "batch_size": 16},
        "resources": {"cpus": 1}, "seed": 0,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(exp))
    monkeypatch.chdir(tmp_path)
    main = cli_main  # the real proxy trainer, no fake
    assert main(["search", "--space", "lora_only.yaml", "--experiment", str(path),
                 "--trials", "3", "--study", "real", "--quiet", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["calibrate", "real", "--k", "2"]) == 0
    out, err = capsys.readouterr()
    with capsys.disabled():  # the real output, for the record
        print("\n" + out)
    assert out.strip().splitlines()[-1].startswith("kendall_tau="), out
    storage = _storage(tmp_path)
    first = load_records(storage, "real")
    assert len(first) == 2
    for r in first.values():
        m = r.metrics
        assert r.status == "complete" and m.steps == 20 and m.extra["fidelity"] == "full"
        assert 0.0 <= m.test_metric <= 1.0 and [s for s, _ in m.intermediate] == [10, 20]
    # a larger k continues: the two stay as they are, one more is trained
    assert main(["calibrate", "real", "--k", "3"]) == 0
    out, err = capsys.readouterr()
    assert err.count("calibrate: training trial") == 1, err
    second = load_records(storage, "real")
    assert len(second) == 3 and all(second[n] == r for n, r in first.items())
    # finalize trains nothing that calibrate trained
    assert main(["finalize", "real", "--top-k", "2", "--out", "final"]) == 0
    out, err = capsys.readouterr()
    assert "finalize: training trial" not in err and err.count("reusing it") == 2, err
    result = storage.get_study_attrs("real")["finalize"]
    for row in result["candidates"]:
        assert row["test_metric"] == second[row["trial"]].metrics.test_metric
    assert (tmp_path / "final" / "autopeft_candidate.yaml").is_file()
