"""Pruners: stop unpromising trials early from their intermediate validation reports.

    pruner = make_pruner({"type": "asha", "min_resource": 50, "eta": 3})
    if pruner.should_stop(trial_number, step, value, params_ratio=0.004):
        ...  # the evaluator stops and returns Metrics(pruned=True)

Asynchronous successive halving (ASHA, Li et al. 2020, arXiv:1810.05934): rungs sit at
min_resource * eta**k steps. The first report at or past a rung's step records the trial's
value there, and the trial continues only if it is in the top 1/eta (at least one) of the
trials recorded at that rung so far. Decisions are taken once per rung, never in between.
Values are validation metrics: higher is better.

"pareto_asha" is the multi-objective variant over (metric up, params_ratio down): a trial
continues if no other trial at its rung dominates it, or, past that first front, while the
trials in strictly better fronts number fewer than the top 1/eta. Optuna and Ray Tune prune
on one metric only (optuna issue 3450, ray issue 8018), which throws away a cheap
candidate whose metric is a little lower: exactly the ones a PEFT search wants.

Pruners are plain picklable objects with a JSON-safe `state_dict`; `rebuild(reports)`
replays stored intermediate reports in order and reaches the same state.
"""
from __future__ import annotations

import abc
import math
from typing import Any, Iterable, Mapping

from autopeft.settings import Setting
from autopeft.exceptions import ConfigError
from autopeft.pareto import front_ranks


class Pruner(abc.ABC):
    """Decides from one intermediate report whether a trial stops now."""

    @abc.abstractmethod
    def should_stop(self, trial_number: int, step: int, value: float, *,
                    params_ratio: float | None = None) -> bool: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - optional
        pass

    def rebuild(self, reports: Iterable[tuple[int, int, float, float | None]]) -> None:
        """Replay (trial_number, step, value, params_ratio) reports in the order made."""
        for trial, step, value, ratio in reports:
            self.should_stop(trial, step, value, params_ratio=ratio)


class SuccessiveHalvingPruner(Pruner):
    """ASHA on one metric (see the module docstring)."""

    def __init__(self, *, min_resource: int = 1, eta: int = 3, max_resource: int | None = None,
                 min_trials_at_rung: int = 1) -> None:
        self.min_resource = min_resource
        self.eta = eta
        self.max_resource = max_resource
        self.min_trials_at_rung = min_trials_at_rung
        self._rungs: list[dict[int, tuple[float, float | None]]] = []
        self._reached: dict[int, int] = {}  # trial -> highest rung index recorded

    def rung_step(self, k: int) -> int:
        return self.min_resource * self.eta ** k

    def _has_rung(self, k: int) -> bool:
        return self.max_resource is None or self.rung_step(k) < self.max_resource

    def should_stop(self, trial_number: int, step: int, value: float, *,
                    params_ratio: float | None = None) -> bool:
        value = float(value)
        if not math.isfinite(value):
            return True  # diverged: nothing left to learn from this trial
        k = self._reached.get(trial_number, -1) + 1
        while self._has_rung(k) and self.rung_step(k) <= step:
            while len(self._rungs) <= k:
                self._rungs.append({})
            self._rungs[k][trial_number] = (value, params_ratio)
            self._reached[trial_number] = k
            if len(self._rungs[k]) >= self.min_trials_at_rung and \
                    not self._promotable(self._rungs[k], trial_number):
                return True
            k += 1
        return False

    def _quota(self, n: int) -> int:
        return max(1, n // self.eta)

    def _promotable(self, rung: Mapping[int, tuple[float, float | None]], trial: int) -> bool:
        mine = rung[trial][0]
        better = sum(1 for t, (v, _) in rung.items() if t != trial and v > mine)
        return better < self._quota(len(rung))

    def state_dict(self) -> dict[str, Any]:
        return {"rungs": [{str(t): list(v) for t, v in r.items()} for r in self._rungs],
                "reached": {str(t): k for t, k in self._reached.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._rungs = [{int(t): (float(v[0]), None if v[1] is None else float(v[1]))
                        for t, v in r.items()} for r in state["rungs"]]
        self._reached = {int(t): int(k) for t, k in state["reached"].items()}


class ParetoHalvingPruner(SuccessiveHalvingPruner):
    """ASHA over (metric up, params_ratio down). A report without params_ratio counts as
    cost 0, so a study that never reports costs gets plain single-metric ASHA."""

    def _promotable(self, rung: Mapping[int, tuple[float, float | None]], trial: int) -> bool:
        points = {t: (v, 0.0 if r is None else float(r)) for t, (v, r) in rung.items()}
        ranks = front_ranks(points)
        ahead = sum(1 for t, f in ranks.items() if f < ranks[trial])
        return ranks[trial] == 0 or ahead < self._quota(len(rung))


# "none" is accepted by make_pruner and means no pruner at all (None)
_PRUNERS: dict[str, type[SuccessiveHalvingPruner]] = {
    "asha": SuccessiveHalvingPruner,
    "successive_halving": SuccessiveHalvingPruner,
    "pareto_asha": ParetoHalvingPruner,
}
_SETTINGS = {
    "min_resource": Setting(1, "int", "steps to the first rung", low=1),
    "eta": Setting(3, "int", "reduction factor: 1/eta of the trials continue at a rung", low=2),
    "max_resource": Setting(None, "int", "no rungs at or past this step", nullable=True, low=1),
    "min_trials_at_rung": Setting(1, "int", "continue while a rung has fewer trials", low=1),
}


def make_pruner(config: Mapping[str, Any] | str | None) -> Pruner | None:
    """A pruner from a preset's `pruner:` mapping (or a bare type name); None for none."""
    if config is None:
        return None
    if isinstance(config, str):
        config = {"type": config}
    if not isinstance(config, Mapping):
        raise ConfigError("a pruner must be a mapping with a `type`", value=config,
                          fix="e.g. pruner: {type: asha, min_resource: 50, eta: 3}")
    kind = config.get("type")
    if kind not in _PRUNERS and kind != "none":
        raise ConfigError(f"unknown pruner type {kind!r}", path="type", value=kind,
                          fix=f"use one of {sorted([*_PRUNERS, 'none'])}")
    if kind == "none":
        if set(config) != {"type"}:
            raise ConfigError("pruner type 'none' takes no settings", path="type")
        return None
    settings = {k: v for k, v in config.items() if k != "type"}
    unknown = sorted(set(settings) - set(_SETTINGS))
    if unknown:
        raise ConfigError(f"pruner {kind!r} has no setting {unknown[0]!r}", path=unknown[0],
                          value=unknown[0], fix=f"known settings: {sorted(_SETTINGS)}")
    checked = {k: spec.check(k, settings[k]) if k in settings else spec.default
               for k, spec in _SETTINGS.items()}
    return _PRUNERS[kind](**checked)
