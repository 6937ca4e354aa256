"""Real faults on a real Ray cluster: two nodes on 127.0.0.1 that each test starts itself.

Each node is started with `ray start` and its own --temp-dir, so the test can find every
process that belongs to one node (its command line names that dir) and kill exactly
those: a worker killed by PID, or a whole node leaving the cluster. Nothing else running
on the machine is touched (no `ray stop`: other people's clusters may be running).

The faults are driven through the real study loop (StudyRunner with SQLite storage), so
what is checked is the retry policy the study applies, not a copy of it in the test.

Also here: the executor starting and stopping its own local runtime (`--workers K`), which
needs a process where Ray is not initialised yet.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from autopeft.executors.ray_executor import RayExecutor  # noqa: E402
from autopeft.records import EvalRequest  # noqa: E402
from autopeft.testing.ray_fakes import deterministic, fake_metric  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

RAY_BIN = str(Path(sys.executable).with_name("ray"))
# Ray finds a dead node by missed health checks: 1 s x 3 instead of the default 3 s x 5,
# so a test sees a node leave in seconds.
FAST_FAILURE_DETECTION = {"health_check_initial_delay_ms": 1000,
                          "health_check_period_ms": 1000,
                          "health_check_timeout_ms": 1000,
                          "health_check_failure_threshold": 3}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A Ray cluster of nodes on this machine, each node owning a private temp dir."""

    def __init__(self) -> None:
        # short paths: Ray puts Unix sockets under the temp dir (108-byte limit)
        self.root = Path(tempfile.mkdtemp(prefix="apr", dir="/tmp"))
        self.env = dict(os.environ)
        # The nodes must use the driver's auth mode. A fresh process connecting to an
        # address speaks "disabled"; once this process has started a local runtime, Ray
        # has switched it to "token" (with the token in ~/.ray/auth_token, which `ray
        # start` reads too).
        self.env["RAY_AUTH_MODE"] = os.environ.get("RAY_AUTH_MODE") or "disabled"
        self.env.pop("RAY_ADDRESS", None)
        self.address: str | None = None
        self.nodes: list[Path] = []

    def _start(self, args: list[str], num_cpus: int) -> Path:
        temp = self.root / f"n{len(self.nodes)}"
        temp.mkdir()
        cmd = [RAY_BIN, "start", "--num-cpus", str(num_cpus), "--temp-dir", str(temp),
               "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
               "--dashboard-agent-listen-port", str(_free_port()),
               "--metrics-export-port", str(_free_port()), *args]
        self.nodes.append(temp)
        subprocess.run(cmd, env=self.env, check=True, timeout=90, capture_output=True)
        return temp

    def start_head(self, num_cpus: int = 1) -> str:
        port = _free_port()
        self._start(["--head", "--port", str(port), "--include-dashboard=false",
                     "--dashboard-port", str(_free_port()),
                     "--system-config", json.dumps(FAST_FAILURE_DETECTION)], num_cpus)
        self.address = f"127.0.0.1:{port}"
        return self.address

    def add_node(self, num_cpus: int = 1) -> Path:
        assert self.address, "start the head first"
        return self._start(["--address", self.address], num_cpus)

    def processes(self, temp: Path) -> list[psutil.Process]:
        """The node's own processes (their command line names its temp dir) and all
        their descendants (workers and agents rename their command lines)."""
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if str(temp) in " ".join(proc.info["cmdline"] or []):
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
            except psutil.Error:
                continue
        return list(found.values())

    def kill_node(self, temp: Path) -> list[int]:
        procs = self.processes(temp)
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=10)
        return [p.pid for p in procs]

    def stop(self) -> None:
        for temp in reversed(self.nodes):  # worker nodes first, the head last
            self.kill_node(temp)
        subprocess.run(["rm", "-rf", str(self.root)], check=False)


@pytest.fixture
def cluster(monkeypatch):
    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    c = LocalCluster()
    try:
        c.start_head(num_cpus=1)
        c.add_node(num_cpus=1)
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.stop()


def _request(n: int, experiment: dict, attempt: int = 0) -> EvalRequest:
    return EvalRequest(study="faults", trial_number=n, candidate={"trial": n},
                       experiment=experiment, seed=7, attempt=attempt)


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


class _KeepAlive:
    """An executor as the study sees it, except that shutdown() is a no-op."""

    def __init__(self, executor: RayExecutor) -> None:
        self._executor = executor

    def __getattr__(self, name: str):
        return getattr(self._executor, name)

    def shutdown(self) -> None:
        pass


class StudyThread:
    """The real study loop (StudyRunner, SQLite storage, the random controller) driving
    `executor` in a background thread, so the test can kill workers while it runs.

    The fake's options travel in the executor's own experiment (what its workers build
    their evaluator from); the study's experiment stays a plain, valid one.
    """

    def __init__(self, tmp_path: Path, executor: RayExecutor, n_trials: int) -> None:
        from autopeft.controllers import make_controller
        from autopeft.space import load_space
        from autopeft.storage import open_storage
        from autopeft.study import StudyRunner, load_context

        space = load_space("lora_only.yaml")
        self.storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
        self.storage.create_study(
            name="faults", space_text=Path(space.source).read_text(encoding="utf-8"),
            space_fingerprint=space.fingerprint, space_source=str(space.source),
            experiment={"model": "minilm"}, controller="random", controller_settings={},
            seed=7, n_trials=n_trials, versions={})
        self.storage.set_study_attr("faults", "runs_dir", str(tmp_path / "runs"))
        ctx = load_context(self.storage, "faults")
        self.seed = ctx.seed
        controller = make_controller("random", ctx.space, seed=ctx.seed)
        # the runner shuts its executor down when the study ends; the test still reads the
        # live executor's workers afterwards, so the runner gets a view whose shutdown is
        # left to the test's own `with RayExecutor(...)` block
        self.runner = StudyRunner(self.storage, ctx, controller, _KeepAlive(executor),
                                  max_retries=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in join()
            self.error = exc

    def join(self, timeout: float = 120.0) -> list:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the study loop is stuck"
        if self.error is not None:
            raise self.error
        trials = self.storage.get_trials("faults")
        self.storage.close()
        return trials


def _check_metrics(trials: list, seed: int) -> None:
    from autopeft.study import trial_seed

    for t in trials:
        expected = fake_metric(t.candidate, trial_seed(seed, t.number))
        assert t.metrics.metric == pytest.approx(expected)


def _nodes_of(executor: RayExecutor) -> set[str]:
    return {w.node_id for w in executor.workers_info() if w.node_id}


@pytest.mark.slow
def test_worker_killed_mid_trial_is_retried_on_another_worker(cluster, tmp_path):
    from autopeft.records import TrialState

    t0 = time.monotonic()
    started = tmp_path / "started"
    started.mkdir()
    exp = {"fake": {"sleep": 3.0, "steps": 6, "started_dir": str(started)}}
    with RayExecutor(exp, workers=2, address=cluster.address,
                     evaluator_factory=deterministic) as ex:
        assert ex.wait_ready(60)
        assert len(_nodes_of(ex)) == 2, "one worker per node (1 CPU each)"
        study = StudyThread(tmp_path, ex, n_trials=3)
        _wait_for(started / "started-0-0")
        victim = next(w for w in ex.workers_info() if w.trial_number == 0)
        os.kill(victim.pid, signal.SIGKILL)

        trials = study.join()
        assert [t.number for t in trials] == [0, 1, 2]  # the budget, no duplicate
        assert all(t.state == TrialState.COMPLETE for t in trials)
        assert [t.attempts for t in trials] == [2, 1, 1]  # the study retried the victim's
        survivors = {w.worker for w in ex.workers_info()}
        assert victim.worker not in survivors
        assert trials[0].worker != victim.worker  # stored: the worker that finished it
        assert all(t.worker.startswith("ray:") and t.worker != "ray:local" for t in trials)
        _check_metrics(trials, study.seed)
        # capacity kept: the dead actor was replaced and the replacement starts
        assert ex.restarts == 1
        assert ex.wait_ready(60)
        pids = {w.pid for w in ex.workers_info()}
        assert len(pids) == 2 and victim.pid not in pids
    print(f"worker-kill test took {time.monotonic() - t0:.1f}s", file=sys.stderr)


@pytest.mark.slow
def test_node_leaving_the_cluster_reruns_its_trials_elsewhere(cluster, tmp_path):
    from autopeft.records import TrialState

    t0 = time.monotonic()
    started = tmp_path / "started"
    started.mkdir()
    exp = {"fake": {"sleep": 4.0, "steps": 8, "started_dir": str(started)}}
    head, second = cluster.nodes
    with RayExecutor(exp, workers=2, address=cluster.address,
                     evaluator_factory=deterministic) as ex:
        assert ex.wait_ready(60)
        study = StudyThread(tmp_path, ex, n_trials=3)
        _wait_for(started / "started-0-0")
        _wait_for(started / "started-1-0")
        second_pids = {p.pid for p in cluster.processes(second)}
        lost = [w for w in ex.workers_info() if w.pid in second_pids]
        assert len(lost) == 1 and lost[0].trial_number is not None
        lost_trial = lost[0].trial_number
        cluster.kill_node(second)

        trials = study.join()
        assert [t.number for t in trials] == [0, 1, 2]
        assert all(t.state == TrialState.COMPLETE for t in trials)
        assert trials[lost_trial].attempts == 2  # the study retried it, once
        assert sum(t.attempts for t in trials) == 4
        head_workers = {w.worker for w in ex.workers_info() if w.pid not in second_pids}
        assert trials[lost_trial].worker in head_workers
        _check_metrics(trials, study.seed)
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 1
    print(f"node-loss test took {time.monotonic() - t0:.1f}s", file=sys.stderr)


def test_local_runtime_is_started_and_stopped_by_the_executor(monkeypatch):
    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    exp = {"fake": {"steps": 2}}
    ex = RayExecutor(exp, workers=1, cpus_per_trial=1, evaluator_factory=deterministic)
    try:
        assert ray.is_initialized()
        assert ray.cluster_resources().get("CPU") == 1
        ex.submit(_request(3, exp))
        (outcome,) = ex.wait(timeout=60)
        assert outcome.error_kind is None and outcome.worker.startswith("ray:")
        node, pid = outcome.worker.split(":")[1:]
        assert int(pid) != os.getpid() and len(node) == 12
    finally:
        ex.shutdown()
    assert not ray.is_initialized()
    ex.shutdown()  # idempotent
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(_request(4, exp))


def test_a_gpu_worker_on_a_machine_without_gpus_is_refused(monkeypatch):
    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if _has_gpu():
        pytest.skip("this machine has a GPU")
    from autopeft.exceptions import ConfigError

    exp = {"fake": {}}
    with pytest.raises(ConfigError, match="resources.gpus: 0") as err:
        RayExecutor(exp, workers=1, gpus_per_trial=1, evaluator_factory=deterministic)
    assert err.value.path == "resources"
    assert not ray.is_initialized()  # the runtime it started is stopped again


def _has_gpu() -> bool:
    import shutil

    return shutil.which("nvidia-smi") is not None
