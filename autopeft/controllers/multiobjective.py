"""Pareto search over (metric up, params_ratio down, flops_ratio down).

Two Optuna samplers behind the same ask-and-tell controller as tpe (see tpe.py for the
state and resume rules; nsga2 alone is not stateless, see NSGA2Controller): "motpe" is
multi-objective TPE (Ozaki et al. 2020), "nsga2" is NSGA-II (Deb et al. 2002).
`pareto_front()` returns the completed trials no other completed trial dominates; pruned
trials are left out of it, their metric being a partial one.
"""
from __future__ import annotations

from typing import Any

from autopeft._imports import require
from autopeft.controllers.base import _MAX_TRIALS, Setting, objectives_of
from autopeft.controllers.tpe import TPE_SETTINGS, OptunaController, quiet_optuna, tpe_sampler
from autopeft.pareto import dominates
from autopeft.records import TrialRecord, TrialState


class _ParetoController(OptunaController):
    directions = ("maximize", "minimize", "minimize")

    def __init__(self, space: Any, *, seed: int, **settings: Any) -> None:
        super().__init__(space, seed=seed, **settings)
        self._pruned: set[int] = set()

    def _values(self, record: TrialRecord) -> list[float] | None:
        vals = objectives_of(record)
        if vals is not None and record.state is TrialState.PRUNED:
            self._pruned.add(record.number)
        return None if vals is None else list(vals)

    def pareto_front(self) -> list[dict[str, Any]]:
        """[{"number", "assignment", "metric", "params_ratio", "flops_ratio"}], by metric."""
        done = [(n, a, v) for n, a, v in self.observations() if n not in self._pruned]
        front = [(n, a, v) for n, a, v in done
                 if not any(dominates(w, v) for _, _, w in done)]
        front.sort(key=lambda x: (-x[2][0], x[2][1], x[2][2]))
        return [{"number": n, "assignment": a, "metric": v[0], "params_ratio": v[1],
                 "flops_ratio": v[2]} for n, a, v in front]

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "pruned": sorted(self._pruned)}

    def _load(self, own: Any) -> None:
        super()._load(own)
        self._pruned = {int(n) for n in own.get("pruned", [])}


class MOTPEController(_ParetoController):
    name = "motpe"
    SETTINGS = TPE_SETTINGS

    def _make_sampler(self, seed: int) -> Any:
        # optuna's TPE is multi-objective when its study has several directions
        return tpe_sampler(self.settings, seed, group=True)


class NSGA2Controller(_ParetoController):
    name = "nsga2"
    # NSGA-II numbers generations in trial attributes the study's records do not keep:
    # the saved state restores them exactly, a rebuild from records only approximately
    stateless = False
    SETTINGS = {
        "max_trials": _MAX_TRIALS,
        "population_size": Setting(20, "int", "trials per generation", low=2),
        "mutation_prob": Setting(None, "float", "per-parameter mutation probability "
                                 "(None: 1/number of parameters)", nullable=True, low=0, high=1),
        "crossover_prob": Setting(0.9, "float", "probability of a crossover", low=0, high=1),
        "swapping_prob": Setting(0.5, "float", "uniform crossover swap probability",
                                 low=0, high=1),
    }

    def _make_sampler(self, seed: int) -> Any:
        s = self.settings
        with quiet_optuna():
            return require("optuna").samplers.NSGAIISampler(
                seed=seed, population_size=s["population_size"],
                mutation_prob=s["mutation_prob"], crossover_prob=s["crossover_prob"],
                swapping_prob=s["swapping_prob"])
