"""Re-ranking stored trials under another λ and other limits, and the export command
that would export the same choice.

`rank` is the dashboard's only ordering of trials. It re-scores each completed trial
from its stored metrics with the project's reward function (autopeft.reward.score) and
orders them by the project's one rule (autopeft.ranking), as `autopeft export` and
`finalize` do: feasible first, then reward high to low, then trial number.
"""
from __future__ import annotations

import dataclasses
import shlex
from typing import Any, Iterable, Mapping

from autopeft.records import TrialRecord

# The re-ranking controls: (query/field name, ExperimentConfig constraint attribute,
# `autopeft export` flag that sets it). None: the config attribute is reward.lam.
CONTROLS = (
    ("lam", None, "--lambda"),
    ("max_params", "max_params_ratio", "--max-params"),
    ("max_flops", "max_flops_ratio", "--max-flops"),
    ("max_latency", "max_latency_ratio", "--max-latency"),
)


# one re-scored trial: autopeft.ranking's Rescored (trial, reward, feasible, reasons)
Ranked = Any


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
         chosen: Mapping[str, float | None]) -> list[Any]:
    """Completed trials re-scored under `chosen` (see rescored_config), best first, by
    the project's one ranking rule (autopeft.ranking.rescore)."""
    from autopeft.ranking import rescore

    return rescore(trials, rescored_config(experiment, chosen))


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
