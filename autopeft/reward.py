"""The reward of a trial and the Pareto front of a study, from stored metrics only.

Pure Python.  The study computes the reward in the driver after each trial, so λ and the
constraints can change after a search and every stored trial can be re-scored without
retraining (`score(record.metrics, new_config)`).

    R = metric − λ · (w_params · params_ratio + w_flops · flops_ratio)

flops_ratio here is the deployed one (Cost.deployed_flops_ratio): added FLOPs per token
once the modules that merge into the base weights (LoRA, IA3, BitFit, ...) are merged, as
a served model runs them; adapters and prefixes cost what they add.  The same rule decides
the latency limit (a merged module is timed as the base: 0).  The unmerged figure stays in
the record (`flops_ratio`) and in `show --json`.

A constraint (max_params_ratio, max_latency_ratio, max_flops_ratio) is a hard limit: a
trial over it is marked infeasible, with the reasons, rather than only penalised, so a
cheap-but-too-big candidate can never win by a large metric. Latency is a noisy
measurement, so its limit is decided from the stored confidence interval, never from the
point estimate alone (`latency_verdict`; the method: autopeft.cost.latency).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from autopeft.config import ConstraintsConfig, ExperimentConfig, RewardConfig
from autopeft.pareto import dominates, front
from autopeft.cost.latency import OVER, verdict
from autopeft.records import Metrics, TrialRecord, TrialState, deployed_flops

__all__ = ["Score", "dominates", "latency_verdict", "pareto_front", "pareto_trials",
           "reward_value", "score", "violations"]


class Score(NamedTuple):
    reward: float
    feasible: bool
    reasons: tuple[str, ...]


def reward_value(metric: float, params_ratio: float, flops_ratio: float,
                 weights: RewardConfig) -> float:
    penalty = weights.w_params * params_ratio + weights.w_flops * flops_ratio
    return float(metric) - weights.lam * penalty


def latency_verdict(cost: Mapping[str, Any], limit: float | None) -> str:
    """Where a stored latency lies against `limit`: "within", "over", "uncertain" (its
    interval straddles the limit) or "no limit" (no limit, or latency not measured).

    Read from the stored interval (latency_low..latency_high); a record made before the
    interval existed has only the point latency_ratio, which then stands for both ends.
    """
    point = cost.get("latency_ratio")
    if point is None:
        return verdict(None, None, None)
    low, high = cost.get("latency_low"), cost.get("latency_high")
    return verdict(point if low is None else low, point if high is None else high, limit)


def violations(cost: Mapping[str, Any], limits: ConstraintsConfig) -> tuple[str, ...]:
    """Why a cost breaks the constraints (empty when it does not).

    A latency limit is broken only on evidence: when the interval's lower end is above it
    (latency_verdict "over"). An unmeasured latency, or one whose interval straddles the
    limit ("uncertain"), is not a violation.
    """
    out = []
    values = {"params_ratio": cost.get("params_ratio"),
              "flops_ratio": None if cost.get("flops_ratio") is None else deployed_flops(cost)}
    checks = (("params_ratio", limits.max_params_ratio, "max_params_ratio"),
              ("flops_ratio", limits.max_flops_ratio, "max_flops_ratio"))
    for key, limit, name in checks:
        value = values[key]
        if limit is not None and value is not None and value > limit:
            out.append(f"{key}={value:.4g} > {name}={limit:g}")
    limit = limits.max_latency_ratio
    if latency_verdict(cost, limit) == OVER:
        lat = f"latency_ratio={cost['latency_ratio']:.4g}"
        if cost.get("latency_low") is not None:
            conf = cost.get("latency_confidence")
            lat += (f" ({'' if conf is None else f'{100 * conf:.0f}% '}interval "
                    f"{cost['latency_low']:.4g}..{cost['latency_high']:.4g})")
        out.append(f"{lat} > max_latency_ratio={limit:g}")
    return tuple(out)


def _settings(experiment: ExperimentConfig | Mapping[str, Any]) -> ExperimentConfig:
    if isinstance(experiment, ExperimentConfig):
        return experiment
    return ExperimentConfig.from_dict(experiment)


def score(metrics: Metrics | Mapping[str, Any],
          experiment: ExperimentConfig | Mapping[str, Any]) -> Score:
    """(reward, feasible, reasons) of one trial's metrics under an experiment's settings."""
    cfg = _settings(experiment)
    m = metrics.to_dict() if isinstance(metrics, Metrics) else dict(metrics)
    cost = dict(m["cost"])
    r = reward_value(m["metric"], float(cost.get("params_ratio") or 0.0),
                     deployed_flops(cost), cfg.reward)
    reasons = violations(cost, cfg.constraints)
    return Score(r, not reasons, reasons)


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated (metric, params_ratio, flops_ratio) points, in input
    order (autopeft.pareto.front)."""
    return front(points)


def pareto_trials(records: Iterable[TrialRecord], *,
                  feasible_only: bool = False) -> list[TrialRecord]:
    """The Pareto-optimal finished trials (COMPLETE, with metrics) of a study."""
    pool = [r for r in records
            if r.state == TrialState.COMPLETE and r.metrics is not None
            and (not feasible_only or r.feasible is not False)]
    pts = [(r.metrics.metric, r.metrics.cost.params_ratio, r.metrics.cost.deployed_flops_ratio)
           for r in pool]
    return [pool[i] for i in pareto_front(pts)]
