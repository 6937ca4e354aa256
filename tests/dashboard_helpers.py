"""Studies for the dashboard tests, written through the real Storage API."""
from __future__ import annotations

from typing import Any, Iterable

from autopeft.config import ExperimentConfig
from autopeft.records import Cost, Metrics, TrialState

BASE = 22_700_000
XSS_STUDY = "<script>alert(1)</script>"
XSS_CANDIDATE = {"modules": [{"type": "<img src=x onerror=alert(2)>", "rank": 2}],
                 "hyper": {"learning_rate": 1e-3}}
XSS_ERROR = "<img src=y onerror=alert(3)> broke"


def lora(rank: int, lr: float = 1e-3) -> dict[str, Any]:
    return {"modules": [{"type": "lora", "rank": rank, "alpha": 16.0, "dropout": 0.0,
                         "targets": ["q", "v"], "layers": [0, 1, 2, 3, 4, 5]}],
            "hyper": {"learning_rate": lr}, "num_layers": 6}


def metrics(metric: float, params_ratio: float, *, steps: int = 100,
            checkpoint: str | None = None, pruned: bool = False) -> Metrics:
    trainable = int(params_ratio * BASE)
    cost = Cost(trainable_params=trainable, base_params=BASE, params_ratio=params_ratio,
                base_flops_per_token=2.0 * BASE, extra_flops_per_token=2.0 * trainable,
                flops_ratio=params_ratio, flops_ratio_merged=0.0, latency_ratio=0.1)
    curve = tuple((steps * i // 4, metric * (0.7 + 0.1 * i)) for i in range(1, 4)) + (
        (steps, metric),)
    return Metrics(metric=metric, metric_name="accuracy", cost=cost, intermediate=curve,
                   steps=steps, checkpoint=checkpoint, pruned=pruned)


def make_study(storage: Any, name: str, rows: Iterable[dict[str, Any]], *,
               lam: float = 1.0, max_params: float | None = 0.05, n_trials: int = 10) -> None:
    """rows: dicts with metric, ratio, and optional state, candidate, error, meta, lr."""
    from autopeft.reward import score

    exp = ExperimentConfig().to_dict()
    exp["reward"]["lambda"] = lam
    exp["constraints"]["max_params_ratio"] = max_params
    if name == XSS_STUDY:
        # autopeft refuses such a name now (it must be safe as a folder); a database
        # written by an older version or another tool may still hold one, so the row is
        # written past the check, and the page must show it as text
        from unittest import mock

        with mock.patch("autopeft.storage.rdb.check_name", lambda n: n):
            storage.create_study(name=name, space_text="space: t\n",
                                 space_fingerprint="f" * 16, experiment=exp,
                                 controller="random", seed=0, n_trials=n_trials)
    else:
        storage.create_study(name=name, space_text="space: t\n", space_fingerprint="f" * 16,
                             experiment=exp, controller="random", seed=0, n_trials=n_trials)
    for row in rows:
        state = TrialState(row.get("state", "complete"))
        cand = row.get("candidate") or lora(row.get("rank", 8), row.get("lr", 1e-3))
        t = storage.create_trial(name, {"module": "lora"}, cand, None, row.get("meta") or {})
        storage.set_trial_running(name, t.number, "worker-a", 0)
        if state is TrialState.RUNNING:
            storage.add_intermediate(name, t.number, 10, 0.5)
            continue
        if state is TrialState.FAILED:
            storage.finish_trial(name, t.number, state, None, None, None, row.get("error"))
            continue
        m = metrics(row["metric"], row["ratio"], checkpoint=row.get("checkpoint"),
                    pruned=state is TrialState.PRUNED)
        s = score(m, exp)
        for step, value in m.intermediate:
            storage.add_intermediate(name, t.number, step, value)
        storage.finish_trial(name, t.number, state, m, s.reward, s.feasible,
                             "; ".join(s.reasons) or None)


# metric, params ratio: with λ=1 the big one (#2) wins; with λ=20 the smallest (#0).
SMALL_BIG = [
    {"metric": 0.80, "ratio": 0.001, "rank": 1},
    {"metric": 0.83, "ratio": 0.010, "rank": 8},
    {"metric": 0.90, "ratio": 0.040, "rank": 32, "meta": {"recipe": "lora-r32"}},
    {"metric": 0.70, "ratio": 0.020, "state": "pruned"},
    {"state": "failed", "error": "CUDA out of memory\nmore"},
]
