"""The dashboard without a browser: its data, re-ranking, pages, 404s, escaping, and that
it only reads. Browser tests are in test_dashboard_browser.py."""
from __future__ import annotations

import json
import sqlite3
import warnings

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("starlette")

from dashboard_helpers import (SMALL_BIG, XSS_CANDIDATE, XSS_ERROR, XSS_STUDY,  # noqa: E402
                               make_study)

from autopeft import plots  # noqa: E402
from autopeft.cli import main  # noqa: E402
from autopeft.dashboard import ranking  # noqa: E402
from autopeft.storage import open_storage  # noqa: E402
from autopeft.storage.testing import pg_database, storage_url  # noqa: E402,F401 (fixtures)


def _client(url):
    warnings.filterwarnings("ignore", message=".*httpx.*")  # starlette's note on its client
    from starlette.testclient import TestClient

    from autopeft.dashboard import create_app

    return TestClient(create_app(url), raise_server_exceptions=False)


@pytest.fixture
def study_url(storage_url):  # noqa: F811
    storage = open_storage(storage_url)
    make_study(storage, "s", SMALL_BIG)
    storage.close()
    return storage_url


# -- data: the shared plot series ---------------------------------------------------------
def test_plot_series_best_so_far_front_and_pruned_curves(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}")
    make_study(storage, "s", SMALL_BIG)
    trials = storage.get_trials("s")
    r = plots.reward_series(trials)
    assert r["number"] == [0, 1, 2, 3]  # scored: complete and pruned, not the failure
    assert r["best"] == [max(r["reward"][: i + 1]) for i in range(4)]
    assert all(s is not None and s >= 0 for s in r["seconds"])
    p = plots.pareto_series(trials)
    front = [p["number"][i] for i in p["front"]]
    assert front == [0, 1, 2]  # #3 (0.70 at 2%) is dominated by #1 (0.83 at 1%)
    curves = {c["number"]: c for c in plots.curve_series(trials)}
    assert curves[3]["pruned"] and not curves[2]["pruned"] and 4 not in curves
    assert curves[2]["value"][-1] == pytest.approx(0.90)


def test_report_draws_from_the_shared_series(tmp_path):
    pytest.importorskip("matplotlib")
    from autopeft.report import decision_importance, write_report

    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}")
    make_study(storage, "s", SMALL_BIG)
    paths = write_report(storage.get_trials("s"), tmp_path / "out", title="t")
    assert [p.name for p in paths] == ["reward.png", "pareto.png", "importance.png",
                                       "report.html"]
    assert decision_importance is plots.decision_importance
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("<tr><td>") == 3  # the three Pareto trials of plots.pareto_series


# -- re-ranking ---------------------------------------------------------------------------
def test_rank_rescores_and_orders_as_finalize_does(tmp_path):
    from autopeft.finalize import rank_trials

    storage = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    make_study(storage, "s", SMALL_BIG)
    info, trials = storage.get_study("s"), storage.get_trials("s")
    stored = ranking.settings(info.experiment)
    assert stored == {"lam": 1.0, "max_params": 0.05, "max_flops": None, "max_latency": 0.15}
    for lam, max_params in [(1.0, 0.05), (20.0, 0.05), (1.0, 0.005), (0.0, None)]:
        mine = ranking.rank(trials, info.experiment, {**stored, "lam": lam,
                                                      "max_params": max_params})
        _, theirs = rank_trials(storage, "s", lam=lam, max_params=max_params)
        if max_params is None:  # finalize cannot lift a limit; without one all are feasible
            assert all(r.feasible for r in mine)
            continue
        assert [(r.trial.number, r.reward, r.feasible) for r in mine] == \
            [(t.number, rw, ok) for t, rw, ok, _ in theirs]
    best = {lam: ranking.rank(trials, info.experiment, {**stored, "lam": lam})[0].trial.number
            for lam in (1.0, 20.0)}
    assert best == {1.0: 2, 20.0: 0}
    lat = ranking.rank(trials, info.experiment, {**stored, "max_latency": 0.05})
    assert not any(r.feasible for r in lat)  # every trial measured latency_ratio 0.1


def test_export_command_names_only_changed_settings_and_what_export_cannot_say():
    stored = {"lam": 1.0, "max_params": 0.05, "max_flops": None, "max_latency": None}
    flags = {"--lambda", "--max-params", "--storage", "--out"}
    cmd, notes = ranking.export_command("s", stored, stored, flags, None)
    assert cmd == "autopeft export s --out export-s" and notes == []
    cmd, notes = ranking.export_command("my study", stored, {**stored, "lam": 20.0,
                                        "max_flops": 0.1}, flags, "sqlite:////x/a.db")
    assert cmd == ("autopeft export 'my study' --out export-my_study --lambda 20 "
                   "--storage sqlite:////x/a.db")
    assert len(notes) == 1 and "--max-flops" in notes[0]
    _, notes = ranking.export_command("s", stored, {**stored, "max_params": None}, flags, None)
    assert "cannot remove" in notes[0]


@pytest.mark.slow  # `autopeft export` writes peft configs: it imports the ML stack
def test_the_shown_export_command_exports_the_dashboard_best(tmp_path, monkeypatch, capsys):
    """Through the real CLI: `autopeft export` with the page's flags picks the page's best."""
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'e.db'}"
    storage = open_storage(db)
    make_study(storage, "s", SMALL_BIG)
    storage.close()
    with _client(db) as c:
        data = c.get("/api/study", params={"name": "s", "lam": "20"}).json()
    best, cmd = data["ranking"]["best"]["number"], data["ranking"]["command"]
    assert best == 0 and "--lambda 20" in cmd
    argv = cmd.split()[1:]
    assert main(argv) == 0
    assert f"exported trial {best} " in capsys.readouterr().out


# -- pages --------------------------------------------------------------------------------
def test_api_on_each_backend_lists_ranks_and_rescores(study_url):
    with _client(study_url) as c:
        studies = c.get("/api/studies").json()["studies"]
        assert [(s["name"], s["finished"], s["n_trials"]) for s in studies] == [("s", 5, 10)]
        data = c.get("/api/study", params={"name": "s"}).json()
        rows = {r["number"]: r for r in data["trials"]}
        assert rows[2]["rank"] == 1 and rows[2]["recipe"] == "lora-r32"
        assert rows[0]["recipe"] is None and rows[4]["state"] == "failed"
        assert rows[4]["error"] == "CUDA out of memory"  # first line only in the table
        assert rows[1]["learning_rate"] == 1e-3 and rows[1]["worker"] == "worker-a"
        assert rows[1]["params_pct"] == pytest.approx(1.0)
        assert data["ranking"]["best"]["number"] == 2
        again = c.get("/api/study", params={"name": "s", "lam": "20"}).json()
        assert again["ranking"]["best"]["number"] == 0
        assert again["ranking"]["order"][0] == 0
        none = c.get("/api/study", params={"name": "s", "max_params": "0.0001"}).json()
        assert none["ranking"]["best"] is None and none["ranking"]["command"] is None
        assert c.get("/api/study", params={"name": "s", "lam": "x"}).status_code == 400
        assert c.get("/api/study", params={"name": "s", "lam": "-1"}).status_code == 400
        assert c.get("/api/trial", params={"name": "s", "number": "2"}).json()[
            "cost"]["params_ratio"] == pytest.approx(0.04)


def test_unknown_study_or_trial_is_a_404_page_never_a_traceback(study_url):
    with _client(study_url) as c:
        for path in ("/studies/nope", "/studies/s/trials/99", "/studies/s/trials/-1",
                     "/no/such/page", "/static/evil.js", "/studies/nope/trials/0"):
            r = c.get(path)
            assert r.status_code == 404, path
            assert "Not found" in r.text and "Traceback" not in r.text, path
        r = c.get("/api/study", params={"name": "nope"})
        assert r.status_code == 404 and "nope" in r.json()["error"]
        assert c.get("/api/trial", params={"name": "s", "number": "7"}).status_code == 404


def test_names_candidates_and_errors_are_escaped(tmp_path):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    storage = open_storage(db)
    make_study(storage, XSS_STUDY, [
        {"metric": 0.8, "ratio": 0.01, "candidate": XSS_CANDIDATE},
        {"state": "failed", "error": XSS_ERROR}])
    storage.close()
    with _client(db) as c:
        from urllib.parse import quote

        for path in (f"/studies/{quote(XSS_STUDY, safe='')}",
                     f"/studies/{quote(XSS_STUDY, safe='')}/trials/0",
                     f"/studies/{quote(XSS_STUDY, safe='')}/trials/1"):
            page = c.get(path)
            assert page.status_code == 200, path
            assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)" in page.text
            assert "<img" not in page.text
        assert "&lt;img src=y onerror=alert(3)&gt; broke" in page.text
        data = c.get("/api/study", params={"name": XSS_STUDY}).json()
        assert "<img src=x" in data["trials"][0]["candidate"]  # JSON keeps the text as is


def test_plotly_is_served_from_the_installed_wheel(tmp_path):
    from autopeft.dashboard.app import plotly_js

    with _client(f"sqlite:///{tmp_path / 'n.db'}") as c:
        r = c.get("/static/plotly.min.js")
        assert r.status_code == 200 and r.content == plotly_js().read_bytes()
        page = c.get("/").text
    assert "http://" not in page and "https://" not in page  # nothing from a CDN


def test_no_database_yet_is_a_message_and_nothing_is_created(tmp_path):
    path = tmp_path / "later.db"
    with _client(f"sqlite:///{path}") as c:
        assert c.get("/api/studies").json()["studies"] == []
        r = c.get("/studies/x")
        assert r.status_code == 503 and "autopeft search" in r.text
        assert not path.exists()
        storage = open_storage(f"sqlite:///{path}")  # the search starts
        make_study(storage, "late", SMALL_BIG[:1])
        assert [s["name"] for s in c.get("/api/studies").json()["studies"]] == ["late"]


def test_reading_changes_nothing_and_leaves_no_transaction_open(tmp_path):
    """After the pages were read, a writer gets the lock at once and a full WAL checkpoint
    succeeds: a reader still inside a transaction would make the checkpoint busy."""
    path = tmp_path / "ro.db"
    storage = open_storage(f"sqlite:///{path}")
    make_study(storage, "s", SMALL_BIG)
    storage.close()

    def dump():
        con = sqlite3.connect(path)
        try:
            return [list(con.execute(f"SELECT * FROM {t} ORDER BY 1"))
                    for (t,) in con.execute("SELECT name FROM sqlite_master WHERE "
                                            "type='table' ORDER BY name")]
        finally:
            con.close()

    before = dump()
    with _client(f"sqlite:///{path}") as c:
        for url in ("/", "/api/studies", "/studies/s", "/studies/s/trials/1"):
            assert c.get(url).status_code == 200
        for lam in ("0", "5", "20"):
            c.get("/api/study", params={"name": "s", "lam": lam})
        c.get("/api/trial", params={"name": "s", "number": "3"})
        con = sqlite3.connect(path, timeout=0.5)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("UPDATE autopeft_studies SET status = status")
            con.execute("COMMIT")
            busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            con.close()
        assert busy == 0
    assert dump() == before


# -- the command ----------------------------------------------------------------------------
def test_cli_binds_loopback_by_default_and_warns_for_another_host(monkeypatch, capsys, tmp_path):
    import uvicorn

    calls, nice = [], []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr("os.nice", nice.append)  # not this test process's priority
    monkeypatch.chdir(tmp_path)
    assert main(["dashboard"]) == 0
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8080
    assert "no authentication" not in capsys.readouterr().err
    assert main(["dashboard", "--host", "0.0.0.0", "--port", "9000"]) == 0
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 9000
    assert "no authentication" in capsys.readouterr().err
    assert main(["dashboard", "--port", "70000"]) == 1
    assert "--port" in capsys.readouterr().err
    assert len(calls) == 2 and nice == [10, 10]  # it yields the CPU to the search
    assert not (tmp_path / "autopeft.db").exists()  # starting it wrote nothing


def test_dashboard_json_is_plain_json(study_url):
    with _client(study_url) as c:
        text = c.get("/api/study", params={"name": "s"}).text
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)


def test_a_poll_with_nothing_new_reads_no_trials_and_a_change_is_seen(tmp_path, monkeypatch):
    from autopeft.dashboard import data

    db = f"sqlite:///{tmp_path / 'v.db'}"
    storage = open_storage(db)
    make_study(storage, "s", SMALL_BIG)
    with _client(db) as c:
        first = c.get("/api/study", params={"name": "s"}).json()
        reader = c.app.state.reader
        calls = []
        real = reader.storage().get_trials
        monkeypatch.setattr(reader.storage(), "get_trials",
                            lambda *a, **k: calls.append(a) or real(*a, **k))
        same = c.get("/api/study", params={"name": "s", "since": first["version"]}).json()
        assert same["unchanged"] and same["version"] == first["version"] and calls == []
        assert same["study"]["finished"] == 5
        other = c.get("/api/study", params={"name": "s", "lam": "20",
                                            "since": first["version"]}).json()
        assert other["ranking"]["best"]["number"] == 0  # new settings: answered at once
        assert len(calls) == 1
        storage.create_trial("s", {"module": "lora"}, {"modules": []})  # the search moves on
        # a change within the throttle gap: fresh progress, the table follows later
        monkeypatch.setattr(data, "INFO_MAX_AGE_S", 0.0)
        monkeypatch.setattr(data, "MIN_GAP_S", 3600.0)
        held = c.get("/api/study", params={"name": "s", "since": first["version"]}).json()
        assert held["unchanged"] and held["study"]["counts"]["pending"] == 1
        assert len(calls) == 1
        monkeypatch.setattr(data, "MIN_GAP_S", 0.0)
        monkeypatch.setattr(data, "DUTY_GAP", 0.0)
        new = c.get("/api/study", params={"name": "s", "since": first["version"]}).json()
        assert new["version"] != first["version"] and len(new["trials"]) == 6
        assert [r["state"] for r in new["trials"]][-1] == "pending"
