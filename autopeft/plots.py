"""The data behind a study's plots, shared by `autopeft report` (matplotlib, PNG) and
`autopeft dashboard` (plotly, in the browser), so both draw the same series.

Every function takes TrialRecords and returns plain JSON-safe dicts and lists; none of
them draws. The plots:

- reward over trials and over time, each trial and the best so far;
- metric against trainable-parameter ratio, with the Pareto front;
- each trial's intermediate validation curve, pruned trials marked;
- per-decision importance: which choices matter.

Importance is the share of the reward's variance that a decision's value explains
(the correlation ratio eta^2 = between-group sum of squares / total sum of squares,
Fisher 1925), computed over the completed trials in which the decision was active.
It is cheap, needs no surrogate model and reads as "how much does this choice matter".
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any, Iterable, Mapping

from autopeft.records import TrialRecord, TrialState


def scored_trials(trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Trials with a reward and metrics (complete or pruned), by number."""
    return sorted((t for t in trials if t.reward is not None and t.metrics is not None),
                  key=lambda t: t.number)


def reward_series(trials: Iterable[TrialRecord]) -> dict[str, list]:
    """Each scored trial's reward and the best reward so far, by trial number and by the
    seconds since the first trial started (at the time each one finished)."""
    scored = scored_trials(trials)
    starts = [t.started_at for t in scored if t.started_at is not None]
    t0 = min(starts) if starts else None
    best, run = [], -math.inf
    for t in scored:
        run = max(run, float(t.reward))
        best.append(run)
    seconds = [None if t0 is None or t.finished_at is None else t.finished_at - t0
               for t in scored]
    return {"number": [t.number for t in scored], "reward": [t.reward for t in scored],
            "best": best, "seconds": seconds}


def pareto_series(trials: Iterable[TrialRecord]) -> dict[str, Any]:
    """Metric against params ratio (in %) for scored trials, and the indices (into those
    lists) of the Pareto front, ordered by cost: lower params and higher metric win."""
    from autopeft.reward import pareto_front  # the project's one dominance test

    scored = scored_trials(trials)
    ratio = [100 * t.metrics.cost.params_ratio for t in scored]
    metric = [t.metrics.metric for t in scored]
    front = sorted(pareto_front(list(zip(metric, ratio))), key=lambda i: (ratio[i], -metric[i]))
    name = scored[0].metrics.metric_name if scored else "metric"
    return {"number": [t.number for t in scored], "params_pct": ratio, "metric": metric,
            "feasible": [t.feasible is not False for t in scored], "front": front,
            "metric_name": name}


def curve_series(trials: Iterable[TrialRecord],
                 live_reports: Mapping[int, list[tuple[int, float]]] | None = None
                 ) -> list[dict[str, Any]]:
    """Each trial's (step, validation metric) reports; `live_reports` (storage's
    get_all_intermediates) fills in trials that have not finished yet."""
    live = live_reports or {}
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        points = list(t.metrics.intermediate) if t.metrics is not None else live.get(t.number, [])
        points = [(s, v) for s, v in points if v is not None and math.isfinite(v)]
        if not points:
            continue
        out.append({"number": t.number, "state": t.state.value,
                    "pruned": t.state is TrialState.PRUNED,
                    "step": [s for s, _ in points], "value": [v for _, v in points]})
    return out


def decision_importance(trials: Iterable[TrialRecord]) -> dict[str, float]:
    """eta^2 of the reward per decision over scored trials (decisions seen >= 2 values)."""
    scored = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
              and t.reward is not None and math.isfinite(t.reward)]
    names = sorted({k for t in scored for k in t.assignment})
    out: dict[str, float] = {}
    for name in names:
        groups: dict[str, list[float]] = defaultdict(list)
        for t in scored:
            if name in t.assignment:
                groups[json.dumps(t.assignment[name], sort_keys=True)].append(float(t.reward))
        values = [v for g in groups.values() for v in g]
        if len(groups) < 2 or len(values) < 3:
            continue
        mean = sum(values) / len(values)
        total = sum((v - mean) ** 2 for v in values)
        if total <= 0:
            out[name] = 0.0
            continue
        between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        out[name] = between / total
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def all_series(trials: list[TrialRecord],
               live_reports: Mapping[int, list[tuple[int, float]]] | None = None
               ) -> dict[str, Any]:
    """Everything a study's plots need, in one JSON-safe dict."""
    return {"reward": reward_series(trials), "pareto": pareto_series(trials),
            "curves": curve_series(trials, live_reports),
            "importance": decision_importance(trials)}
