"""Printing for the CLI: the live progress line and the leaderboard table."""
from __future__ import annotations

import json
import sys
import time
from typing import Any

from autopeft.records import TrialRecord, TrialState, task_names


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class ProgressPrinter:
    """Shows trials finished / running / failed, best reward so far and ETA.

    On a terminal the line is redrawn in place; elsewhere (logs, CI) one line is written
    per finished trial.
    """

    def __init__(self, enabled: bool = True, stream=None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_finished = -1
        self._last_draw = 0.0

    def __call__(self, p) -> None:
        if not self.enabled:
            return
        best = "-" if p.best_reward is None else f"{p.best_reward:.4f} (trial {p.best_trial})"
        line = (f"[{p.finished}/{p.n_trials}] running {p.running}  failed {p.failed}  "
                f"pruned {p.pruned}  best reward {best}  elapsed {_fmt_seconds(p.elapsed)}  "
                f"eta {_fmt_seconds(p.eta_seconds)}")
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw > 0.2 or p.finished != self._last_finished:
                self.stream.write("\r\033[K" + line)
                self.stream.flush()
                self._last_draw = now
        elif p.finished != self._last_finished:
            self.stream.write(f"{line}  {p.last_event}\n")
            self.stream.flush()
        self._last_finished = p.finished

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def trial_row(t: TrialRecord) -> dict[str, Any]:
    """One trial as the JSON object `autopeft show --json` prints."""
    m = t.metrics
    return {
        "number": t.number,
        "state": t.state.value,
        "candidate": dict(t.candidate),
        "assignment": dict(t.assignment),
        "metric": None if m is None else m.metric,
        "metric_name": None if m is None else m.metric_name,
        "params_ratio": None if m is None else m.cost.params_ratio,
        # deployed (merging modules merged): what the reward counts; and unmerged
        "flops_ratio": None if m is None else m.cost.deployed_flops_ratio,
        "flops_ratio_unmerged": None if m is None else m.cost.flops_ratio,
        "latency_ratio": None if m is None else m.cost.latency_ratio,
        # its 99% interval and basis (measured / merged): the limit is decided from these
        "latency_interval": None if m is None or m.cost.latency_low is None
        else [m.cost.latency_low, m.cost.latency_high],
        "latency_basis": None if m is None else m.cost.latency_basis,
        "trainable_params": None if m is None else m.cost.trainable_params,
        "reward": t.reward,
        "feasible": t.feasible,
        "error": t.error,
        "train_seconds": None if m is None else m.train_seconds,
        "warm_start_from": t.warm_start_from,
        "recipe": (t.meta or {}).get("recipe"),  # a standard recipe (autopeft.recipes)
        # a multi-task trial: each task's validation metric (its mean is `metric`)
        "tasks": (m.task_scores or None) if m is not None else None,
        "metrics": None if m is None else m.to_dict(),
    }


def sort_trials(trials: list[TrialRecord]) -> list[TrialRecord]:
    """Display order (autopeft.ranking.leaderboard): ranked trials best first, then the
    pruned ones, then the rest by number."""
    from autopeft.ranking import leaderboard

    return leaderboard(trials)


def leaderboard_lines(trials: list[TrialRecord], top: int | None = None) -> list[str]:
    from autopeft.candidate import Candidate

    rows = sort_trials(trials)[:top] if top else sort_trials(trials)
    tasks = task_names(rows)  # a multi-task study: one column per task
    width = [max(6, len(n)) for n in tasks]
    head = (f"{'#':>4} {'state':<11} {'metric':>7} {'params%':>8} {'flops%':>7} {'reward':>8}"
            + "".join(f" {n:>{w}}" for n, w in zip(tasks, width)) + "  candidate")
    lines = [head, "-" * len(head)]
    for t in rows:
        m = t.metrics
        metric = "-" if m is None else f"{m.metric:.4f}"
        pp = "-" if m is None else f"{100 * m.cost.params_ratio:.3f}"
        fp = "-" if m is None else f"{100 * m.cost.deployed_flops_ratio:.2f}"
        rw = "-" if t.reward is None else f"{t.reward:.4f}"
        state = t.state.value + ("" if t.feasible in (None, True) else "*")
        summary = Candidate.from_dict(t.candidate).summary()
        if (t.meta or {}).get("recipe"):
            summary = f"[recipe {t.meta['recipe']}] {summary}"
        if t.state == TrialState.FAILED and t.error:
            summary += f"  [{t.error.strip().splitlines()[0][:80]}]"
        scores = {} if m is None else m.task_scores
        per_task = "".join(f" {_score(scores.get(n)):>{w}}" for n, w in zip(tasks, width))
        lines.append(f"{t.number:>4} {state:<11} {metric:>7} {pp:>8} {fp:>7} {rw:>8}"
                     f"{per_task}  {summary}")
    if tasks:
        lines.append("metric: the weighted mean of the tasks' validation metrics (one column "
                     "each)")
    if any(t.feasible is False for t in rows):
        lines.append("* infeasible: violates a constraint of the experiment (see --json 'error')")
    return lines


def _score(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def print_leaderboard(storage, name: str, top: int | None = None, stream=None) -> None:
    stream = stream or sys.stdout
    for line in leaderboard_lines(storage.get_trials(name), top):
        print(line, file=stream)


def print_json(obj: Any, stream=None) -> None:
    json.dump(obj, stream or sys.stdout, indent=2, default=str)
    (stream or sys.stdout).write("\n")
