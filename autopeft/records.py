"""The typed records that flow between controller, study, executor, evaluator and storage.

All are frozen dataclasses with a JSON-safe `to_dict` / `from_dict`. Controllers see
Proposal and TrialRecord; evaluators see EvalRequest and return Metrics; only the study
sees all of them.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping


class TrialState(str, enum.Enum):
    PENDING = "pending"          # created, not yet handed to a worker
    RUNNING = "running"          # handed to a worker
    COMPLETE = "complete"        # finished with metrics (immutable from here)
    PRUNED = "pruned"            # stopped early by a pruner (metrics of its last report)
    FAILED = "failed"            # the candidate failed (NaN, OOM, infeasible build)
    INTERRUPTED = "interrupted"  # the driver stopped while it ran; re-run on resume

    @property
    def finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)


@dataclass(frozen=True)
class Proposal:
    """What a controller asks to evaluate.

    assignment: decision name -> value (active decisions only), see autopeft.space.
    warm_start_from: number of a finished trial whose adapter checkpoint to continue from
    (PBT's exploit step); None for a fresh start.
    meta: controller-private data echoed back in the TrialRecord (e.g. PBT member id).
    """

    assignment: Mapping[str, Any]
    warm_start_from: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


def deployed_flops(cost: Mapping[str, Any]) -> float:
    """`Cost.deployed_flops_ratio` from a stored cost mapping (flops_ratio_merged; the
    unmerged flops_ratio for a record that lacks it)."""
    merged = cost.get("flops_ratio_merged")
    return float(cost.get("flops_ratio") or 0.0) if merged is None else float(merged)


@dataclass(frozen=True)
class Cost:
    """The cost of a candidate relative to its base model (autopeft.cost computes it)."""

    trainable_params: int
    base_params: int
    params_ratio: float            # trainable / base
    base_flops_per_token: float    # forward FLOPs per token of the frozen base model
    extra_flops_per_token: float   # added by the modules, unmerged
    flops_ratio: float             # extra / base, unmerged
    flops_ratio_merged: float      # extra / base after merging what can merge
    latency_ratio: float | None = None  # t_candidate / t_base - 1 (median; autopeft.cost.latency)
    mergeable: bool = False
    head_params: int = 0           # the trainable classifier head, not in trainable_params
    # the latency's confidence interval and how it was obtained; a limit is decided from
    # the interval (autopeft.reward.violations). None in records made before it existed
    latency_low: float | None = None
    latency_high: float | None = None
    latency_pairs: int = 0         # timed candidate/base pairs (0: not timed)
    latency_confidence: float | None = None  # of [latency_low, latency_high]
    latency_basis: str | None = None  # "measured" (paired timing) or "merged" (deploys
                                      # merged: the base's architecture, exactly 0)

    @property
    def deployed_flops_ratio(self) -> float:
        """Added FLOPs per token of the model as deployed: the modules that merge into the
        base weights (LoRA, IA3, BitFit...) are merged and add nothing; the rest run as
        they are. What the reward, a flops limit and the Pareto front count."""
        return float(deployed_flops(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Cost":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Metrics:
    """What an evaluator returns for one trial.

    metric: the validation score the controller optimises (higher is better).
    intermediate: (step, validation metric) reports made during training.
    test_metric: only filled by final (finalize) runs, never shown to controllers.
    """

    metric: float
    metric_name: str
    cost: Cost
    intermediate: tuple[tuple[int, float], ...] = ()
    train_loss: float | None = None
    steps: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    test_metric: float | None = None
    checkpoint: str | None = None
    pruned: bool = False  # stopped early because the reporter answered "stop"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def task_scores(self) -> dict[str, float | None]:
        """Each task's validation metric of a multi-task trial (autopeft.evaluation.multitask
        stores them in extra["tasks"]), in the experiment's task order; {} for one task."""
        tasks = self.extra.get("tasks") if isinstance(self.extra, Mapping) else None
        if not isinstance(tasks, Mapping):
            return {}
        return {str(k): (v.get("metric") if isinstance(v, Mapping) else None)
                for k, v in tasks.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cost"] = self.cost.to_dict()
        d["intermediate"] = [list(x) for x in self.intermediate]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Metrics":
        d = dict(d)
        d["cost"] = Cost.from_dict(d["cost"])
        d["intermediate"] = tuple((int(s), float(v)) for s, v in d.get("intermediate", ()))
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class EvalRequest:
    """Everything a worker needs to evaluate one trial; plain data, picklable.

    candidate and experiment are canonical dicts (Candidate.to_dict, ExperimentConfig.to_dict).
    warm_start_path: adapter checkpoint to start from (PBT); checkpoint_dir: where to save.
    """

    study: str
    trial_number: int
    candidate: Mapping[str, Any]
    experiment: Mapping[str, Any]
    seed: int
    attempt: int = 0
    warm_start_path: str | None = None
    checkpoint_dir: str | None = None
    # steps already trained by the checkpoint we start from (PBT continues counting)
    start_step: int = 0


@dataclass(frozen=True)
class TrialRecord:
    """A snapshot of one stored trial, as controllers and the CLI see it."""

    number: int
    state: TrialState
    assignment: Mapping[str, Any]
    candidate: Mapping[str, Any]
    metrics: Metrics | None = None
    reward: float | None = None
    feasible: bool | None = None
    error: str | None = None
    warm_start_from: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = 0
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


def task_names(trials: "list[TrialRecord]") -> list[str]:
    """The tasks of a multi-task study's trials, in their order; [] for one task."""
    names: list[str] = []
    for t in trials:
        for n in (t.metrics.task_scores if t.metrics is not None else {}):
            if n not in names:
                names.append(n)
    return names
