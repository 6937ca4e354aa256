"""Re-ranking stored trials under another λ and other limits, and the export command
that would export the same choice.

`rank` is the dashboard's only ordering of trials. It re-scores each completed trial
from its stored metrics with the project's reward function (autopeft.reward.score) and
orders them as `autopeft export` and `finalize` do (autopeft.finalize.rank_trials):
feasible first, then reward high to low, then trial number. When autopeft.ranking lands
with the project's one ordering, only the body of `rank` changes.
"""
from __future__ import annotations

import dataclasses
import math
import shlex
from typing import Any, Iterable, Mapping, NamedTuple

from autopeft.records import TrialRecord, TrialState

# The re-ranking controls: (query/field name, ExperimentConfig constraint attribute,
# `autopeft export` flag that sets it). None: the config attribute is reward.lam.
CONTROLS = (
    ("lam", None, "--lambda"),
    ("max_params", "max_params_ratio", "--max-params"),
    ("max_flops", "max_flops_ratio", "--max-flops"),
    ("max_latency", "max_latency_ratio", "--max-latency"),
)


class Ranked(NamedTuple):
    trial: TrialRecord
    reward: float
    feasible: bool
    reasons: tuple[str, ...]


def settings(experiment: Mapping[str, Any]) -> dict[str, float | None]:
    """The stored study's λ and limits, as the controls show them."""
    from autopeft.config import ExperimentConfig

    cfg = ExperimentConfig.from_dict(experiment)
    out: dict[str, float | None] = {}
    for key, attr, _ in CONTROLS:
        out[key] = cfg.reward.lam if attr is None else getattr(cfg.constraints, attr)
    return out


def rescored_config(experiment: Mapping[str, Any], chosen: Mapping[str, float | None]) -> Any:
    """The experiment config with λ and the limits replaced by `chosen` (None: no limit)."""
    from autopeft.config import ExperimentConfig

    cfg = ExperimentConfig.from_dict(experiment)
    lam = chosen.get("lam")
    if lam is not None:
        cfg = dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, lam=lam))
    limits = {attr: chosen.get(key) for key, attr, _ in CONTROLS if attr is not None}
    return dataclasses.replace(cfg, constraints=dataclasses.replace(cfg.constraints, **limits))


def rank(trials: Iterable[TrialRecord], experiment: Mapping[str, Any],
         chosen: Mapping[str, float | None]) -> list[Ranked]:
    """Completed trials re-scored under `chosen` (see rescored_config), best first."""
    from autopeft.reward import score

    cfg = rescored_config(experiment, chosen)
    out = []
    for t in trials:
        if t.state is TrialState.COMPLETE and t.metrics is not None:
            # the two parts score reads, without Metrics.to_dict()'s deep copy (which
            # cost the dashboard most of its time on a study of a few hundred trials)
            s = score({"metric": t.metrics.metric, "cost": vars(t.metrics.cost)}, cfg)
            out.append(Ranked(t, s.reward, s.feasible, s.reasons))
    out.sort(key=lambda r: (not r.feasible, -_finite(r.reward), r.trial.number))
    return out


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def export_command(study: str, stored: Mapping[str, float | None],
                   chosen: Mapping[str, float | None], export_flags: set[str],
                   storage: str | None) -> tuple[str, list[str]]:
    """The `autopeft export` command line for this choice, and notes on what it cannot say.

    A setting equal to the stored one needs no flag. `export_flags` are the options the
    installed `autopeft export` has, so a limit it cannot express yet is named in a note
    instead of being shown as a flag that would fail.
    """
    parts = ["autopeft", "export", study, "--out", f"export-{_slug(study)}"]
    notes = []
    for key, _, flag in CONTROLS:
        value, before = chosen.get(key), stored.get(key)
        if value == before or (key == "lam" and value is None):
            continue
        if value is None:
            notes.append(f"{flag} cannot remove the study's limit ({before:g}); export "
                         f"keeps applying it")
        elif flag in export_flags:
            parts += [flag, f"{value:g}"]
        else:
            kept = "no limit" if before is None else f"limit {before:g}"
            notes.append(f"autopeft export has no {flag} option yet: it keeps the "
                         f"study's {kept}")
    if storage:
        parts += ["--storage", storage]
    return " ".join(shlex.quote(p) for p in parts), notes


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "study"
