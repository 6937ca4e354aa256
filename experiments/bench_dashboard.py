"""Does an open dashboard slow a search down? Trial throughput with and without it.

A fast search (the analytic fake evaluator, no training, so the loop is dominated by its
own storage writes: the case most sensitive to a reader holding SQLite locks) runs as
`autopeft search` in a subprocess on a fresh SQLite file. Beside it, in the "dashboard"
conditions, `autopeft dashboard` serves the same file and a client fetches the study
page's data (/api/study, what the open page polls) every `--poll` seconds. Conditions
are interleaved in rotating order over the repeats so drift on a shared machine hits all
of them alike.

Throughput = trials / (last trial finished - first trial created), from the stored
timestamps, so interpreter start-up is not counted.

    python experiments/bench_dashboard.py [--trials 200] [--repeats 3] [--stress 0.1]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE = "autopeft.testing.study_fakes:analytic"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ, AUTOPEFT_FAKE=json.dumps({"sleep": 0.0}))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


class Poller(threading.Thread):
    """Fetches the study page's JSON every `interval` seconds, as the open page does:
    sending back the version it has (`since`), so an unchanged study costs a study-row
    read only."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.stop = threading.Event()
        self.ok, self.full, self.seconds, self.version = 0, 0, [], None

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                url = self.url + (f"&since={self.version}" if self.version else "")
                body = json.loads(urllib.request.urlopen(url, timeout=30).read())
                self.version = body.get("version", self.version)
                self.full += "trials" in body
                self.ok += 1
                self.seconds.append(time.perf_counter() - t0)
            except urllib.error.HTTPError:  # 404 until the search has created the study
                pass
            except OSError:
                pass
            self.stop.wait(max(0.0, self.interval - (time.perf_counter() - t0)))


def _cpu_seconds(proc: subprocess.Popen) -> float:
    """Wait for a child and return the CPU seconds (user + system) it used."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def one_run(trials: int, poll: float | None) -> dict:
    from autopeft.storage import open_storage

    with tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp:
        work = Path(tmp)
        db = f"sqlite:///{work / 'autopeft.db'}"
        open_storage(db).close()  # the schema exists before either process starts
        (work / "fake.yaml").write_text(f"name: fake\nmodel: minilm\nevaluator: {FAKE}\n")
        server = poller = None
        if poll is not None:
            port = _free_port()
            server = subprocess.Popen([sys.executable, "-m", "autopeft", "dashboard",
                                       "--storage", db, "--port", str(port)], cwd=work,
                                      env=_env(), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(base + "/api/studies", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.1)
            poller = Poller(base + "/api/study?name=bench", poll)
            poller.start()
        server_cpu = None
        try:
            search = subprocess.Popen([sys.executable, "-m", "autopeft", "search", "--space",
                                       "default.yaml", "--experiment", "fake.yaml", "--trials",
                                       str(trials), "--study", "bench", "--quiet",
                                       "--storage", db], cwd=work, env=_env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            search_cpu = _cpu_seconds(search)
        finally:
            if poller is not None:
                poller.stop.set()
                poller.join(timeout=30)
            if server is not None:
                server.terminate()
                server_cpu = _cpu_seconds(server)
        storage = open_storage(db)
        try:
            rows = storage.get_trials("bench")
        finally:
            storage.close()
    first = min(t.started_at for t in rows if t.started_at is not None)
    last = max(t.finished_at for t in rows if t.finished_at is not None)
    out = {"trials": len(rows), "seconds": last - first,
           "throughput": (len(rows) - 1) / (last - first),
           "search_cpu_ms_per_trial": 1000 * search_cpu / len(rows),
           "dashboard_cpu_share": None if server_cpu is None else server_cpu / (last - first)}
    if poller is not None:
        out.update(polls=poller.ok, full=poller.full,
                   poll_ms=1000 * statistics.mean(poller.seconds) if poller.seconds else None)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--poll", type=float, default=1.0, help="the page's poll interval (s)")
    ap.add_argument("--stress", type=float, default=0.1,
                    help="a second, harsher poll interval (s); 0 to skip")
    args = ap.parse_args()
    conditions = [("no dashboard", None), (f"dashboard, poll {args.poll:g} s", args.poll)]
    if args.stress:
        conditions.append((f"dashboard, poll {args.stress:g} s (stress)", args.stress))
    results: dict[str, list[dict]] = {name: [] for name, _ in conditions}
    for r in range(args.repeats):
        order = conditions[r % len(conditions):] + conditions[:r % len(conditions)]
        for name, poll in order:
            res = one_run(args.trials, poll)
            results[name].append(res)
            print(f"repeat {r + 1} {name:<36} {res['throughput']:7.2f} trials/s  search "
                  f"{res['search_cpu_ms_per_trial']:.0f} CPU ms/trial"
                  + ("" if res["dashboard_cpu_share"] is None else
                     f"  dashboard {100 * res['dashboard_cpu_share']:.0f}% of a core")
                  + (f"  ({res['polls']} polls, {res['full']} with the trials, "
                     f"{res['poll_ms']:.0f} ms each)"
                     if res.get("polls") else ""), flush=True)
    base = statistics.mean(x["throughput"] for x in results[conditions[0][0]])
    print(f"\n{args.trials} fake trials per run, {args.repeats} repeats, SQLite (WAL), "
          f"{os.cpu_count()} CPUs")
    print(f"{'condition':<38} {'trials/s (mean ± sd)':>22} {'vs none':>8} {'poll ms':>8} "
          f"{'search CPU ms/trial':>20} {'dashboard CPU %':>16}")
    for name, _ in conditions:
        tp = [x["throughput"] for x in results[name]]
        sd = statistics.stdev(tp) if len(tp) > 1 else 0.0
        ms = [x["poll_ms"] for x in results[name] if x.get("poll_ms")]
        cpu = statistics.mean(x["search_cpu_ms_per_trial"] for x in results[name])
        share = [x["dashboard_cpu_share"] for x in results[name]
                 if x["dashboard_cpu_share"] is not None]
        print(f"{name:<38} {statistics.mean(tp):13.2f} ± {sd:5.2f} "
              f"{statistics.mean(tp) / base:8.3f} "
              f"{(statistics.mean(ms) if ms else float('nan')):8.0f} {cpu:20.0f} "
              f"{(100 * statistics.mean(share) if share else float('nan')):16.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
