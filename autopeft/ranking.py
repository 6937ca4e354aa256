"""The one ordering of trials: "best", the leaderboard, `ls`, export and finalize.

The rule:

1. Only COMPLETE trials with a reward are *ranked*. A PRUNED trial's metric is that of
   its last intermediate report, a partial score from a shorter training, and a FAILED
   one has none: neither can be "best" or exported.
2. Feasible before infeasible (a trial over a constraint of the experiment is
   infeasible; see autopeft.reward). `feasible=None`, which only hand-made records have,
   counts as feasible.
3. Higher reward first.
4. Ties go to the lower trial number (the earlier trial).
5. Only proxy-fidelity trials are ranked here. Full-fidelity results (`autopeft
   calibrate`, finalize) are not trials: they are stored apart (study attributes
   `calibration/NNNNN`, see autopeft.calibrate), never ranked against proxy trials (a
   longer training scores higher by itself), and ordered only among themselves there.

`best(trials)` is the first *feasible* ranked trial, or None: exactly the trial that
`export` offers first, so `ls`, `show`, the progress line and export can never disagree.
`leaderboard(trials)` puts every trial in display order: the ranked ones, then the
pruned ones (by the same key), then the rest by number.

`rescore(trials, experiment, **overrides)` recomputes reward and feasibility from the
stored metrics under another λ or other limits, without retraining; export and the
dashboard rank its result with the same rule.

Storage keeps a best reward per study for `ls` in SQL (autopeft.storage.rdb); a test
checks it against `best` on the same trials.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, Sequence

from autopeft.records import TrialRecord, TrialState

__all__ = ["Rescored", "best", "is_ranked", "leaderboard", "rank", "rank_key", "rescore",
           "top_feasible"]


def is_ranked(t: TrialRecord) -> bool:
    """Whether a trial may be "best": COMPLETE with a finite reward."""
    return (t.state is TrialState.COMPLETE and t.reward is not None
            and math.isfinite(float(t.reward)))


def rank_key(t: TrialRecord) -> tuple[bool, float, int]:
    """Sort key of a scored trial: feasible first, reward down, number up."""
    return (t.feasible is False, -float(t.reward), t.number)  # type: ignore[arg-type]


def rank(trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The ranked trials (rule 1), best first (rules 2-4)."""
    return sorted((t for t in trials if is_ranked(t)), key=rank_key)


def best(trials: Iterable[TrialRecord]) -> TrialRecord | None:
    """The best feasible ranked trial, or None when there is none."""
    for t in rank(trials):
        return t if t.feasible is not False else None
    return None


def leaderboard(trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Every trial in display order: ranked, then pruned with a reward, then the rest."""
    def key(t: TrialRecord) -> tuple:
        if is_ranked(t):
            return (0, *rank_key(t))
        if t.state is TrialState.PRUNED and t.reward is not None \
                and math.isfinite(float(t.reward)):
            return (1, *rank_key(t))
        return (2, False, 0.0, t.number)

    return sorted(trials, key=key)


@dataclasses.dataclass(frozen=True)
class Rescored:
    """A stored trial scored again under other reward settings (nothing retrained)."""

    trial: TrialRecord            # as stored (its own reward/feasible untouched)
    reward: float
    feasible: bool
    reasons: tuple[str, ...]

    @property
    def record(self) -> TrialRecord:
        """The trial with the new reward and feasibility, for `rank` and displays."""
        return dataclasses.replace(self.trial, reward=self.reward, feasible=self.feasible,
                                   error="; ".join(self.reasons) or self.trial.error)


def rescore(trials: Iterable[TrialRecord], experiment: Mapping[str, Any] | Any, *,
            lam: float | None = None, max_params_ratio: float | None = None,
            max_flops_ratio: float | None = None,
            max_latency_ratio: float | None = None) -> list[Rescored]:
    """The COMPLETE trials re-scored, best first by the rule above.

    `experiment` is the study's experiment (a dict or an ExperimentConfig); the keyword
    arguments override its reward λ and constraints (None keeps the stored value).
    """
    from autopeft.config import ExperimentConfig
    from autopeft.reward import score

    cfg = experiment if isinstance(experiment, ExperimentConfig) else \
        ExperimentConfig.from_dict(dict(experiment))
    if lam is not None:
        cfg = dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, lam=float(lam)))
    limits = {k: float(v) for k, v in (("max_params_ratio", max_params_ratio),
                                       ("max_flops_ratio", max_flops_ratio),
                                       ("max_latency_ratio", max_latency_ratio))
              if v is not None}
    if limits:
        cfg = dataclasses.replace(cfg, constraints=dataclasses.replace(cfg.constraints,
                                                                       **limits))
    out = []
    for t in trials:
        if t.state is not TrialState.COMPLETE or t.metrics is None:
            continue
        s = score(t.metrics, cfg)
        if math.isfinite(s.reward):
            out.append(Rescored(t, float(s.reward), bool(s.feasible), tuple(s.reasons)))
    out.sort(key=lambda r: rank_key(r.record))
    return out


def top_feasible(rescored: Sequence[Rescored], k: int) -> list[Rescored]:
    """The first k feasible entries of a `rescore` result (what export writes)."""
    return [r for r in rescored if r.feasible][: max(0, int(k))]
