"""What the dashboard shows, read from the study's own database and turned into JSON.

Reading only: every call is one or a few of Storage's read methods, each its own short
transaction (a plain BEGIN on SQLite, which in WAL mode never blocks the search's
writer), and no connection is kept inside a transaction between requests. The database
is opened lazily, and never created: a dashboard started before the first search shows
"no database yet" until one appears, instead of writing a schema itself.
"""
from __future__ import annotations

import json
import math
import threading
import time
from typing import Any, Mapping

import autopeft.dashboard.ranking as ranking
from autopeft.exceptions import StorageError, StudyNotFoundError
from autopeft.plots import all_series, curve_series
from autopeft.records import TrialRecord, TrialState


class NotFound(LookupError):
    """An unknown study or trial: the page answers 404."""


class NoDatabase(RuntimeError):
    """There is no autopeft database at the URL yet (or it cannot be used)."""


class Reader:
    """Opens the storage on first use and answers the pages' questions."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self._storage: Any = None
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        # (study id, settings) -> (the study page's data, when it was read, seconds it took)
        self._pages: dict[str, tuple[dict[str, Any], float, float]] = {}
        self._rows: dict[tuple[int, int], dict[str, Any]] = {}  # finished trials' rows
        self._settings: dict[int, dict[str, float | None]] = {}  # study id -> λ, limits
        self._infos: dict[str, tuple[float, Any]] = {}  # study name -> (read at, StudyInfo)

    def storage(self) -> Any:
        with self._lock:
            if self._storage is None:
                from autopeft.storage import database_revision, open_storage

                state, where = database_revision(self.url)
                if state.current is None and not state.has_tables:
                    raise NoDatabase(f"no autopeft database at {where} yet: start a search "
                                     f"with `autopeft search ... --storage {where}`; this "
                                     f"page shows it once it exists")
                try:
                    self._storage = open_storage(self.url)  # at head: only reads
                except StorageError as exc:
                    raise NoDatabase(str(exc)) from None
            return self._storage

    def close(self) -> None:
        with self._lock:
            if self._storage is not None:
                self._storage.close()
                self._storage = None

    # -- pages ---------------------------------------------------------------------------
    def studies(self) -> list[dict[str, Any]]:
        return [study_row(info) for info in self.storage().list_studies()]

    def info(self, name: str, max_age: float = 0.0) -> Any:
        """The study row; one read serves every request within `max_age` seconds (many
        open tabs cost the database what one does)."""
        now = time.monotonic()
        with self._cache_lock:
            hit = self._infos.get(name)
        if hit is not None and now - hit[0] < max_age:
            return hit[1]
        try:
            info = self.storage().get_study(name)
        except StudyNotFoundError as exc:
            raise NotFound(str(exc)) from None
        with self._cache_lock:
            self._infos[name] = (now, info)
            while len(self._infos) > 64:
                self._infos.pop(next(iter(self._infos)))
        return info

    def study(self, name: str, chosen: Mapping[str, float | None] | None = None,
              export_flags: set[str] | None = None, since: str | None = None
              ) -> dict[str, Any]:
        """The study page's data.

        Reading every trial costs far more than reading the study row, so:
        - the trials are read only when the study row shows a change (`version`), or
          REFRESH_S passed; a client that already has `since` gets only the fresh
          progress ({"unchanged": true, "study": ...});
        - while a fast search changes the study all the time, the trials are read again
          only after DUTY_GAP times as long as the last read took (and at least
          MIN_GAP_S), so an open page costs the search's machine a bounded share of a
          core, however fast trials finish. New settings are always answered at once.
        """
        storage = self.storage()
        info = self.info(name, max_age=INFO_MAX_AGE_S)
        with self._cache_lock:  # a study's experiment never changes: parse it once
            stored = self._settings.get(info.study_id)
        if stored is None:
            stored = ranking.settings(info.experiment)
            with self._cache_lock:
                self._settings[info.study_id] = stored
        picked = {**stored, **{k: v for k, v in (chosen or {}).items() if k in stored}}
        if picked.get("lam") is None:
            picked["lam"] = stored["lam"]
        version = _version(info, picked)
        key = json.dumps([info.study_id, picked], sort_keys=True)
        with self._cache_lock:
            cached = self._pages.get(key)
        if cached is not None:
            page, at, cost = cached
            fresh = page["version"] == version
            throttled = time.monotonic() - at < max(MIN_GAP_S, DUTY_GAP * cost)
            if since == page["version"] and (fresh or throttled):
                return {"unchanged": True, "version": page["version"],
                        "study": study_row(info)}
            if fresh or (throttled and since is not None):
                return page
        # wall time on purpose: on a busy machine (the server runs at nice 10) reads take
        # longer and so come less often, leaving the CPU to the search (measured: throttling
        # by CPU time instead made the search slower, bench_dashboard.py 0.84 vs 0.93)
        started = time.monotonic()
        trials = storage.get_trials(name)
        live = {}
        if any(t.state is TrialState.RUNNING for t in trials):
            live = storage.get_all_intermediates(name)
        ranked = ranking.rank(trials, info.experiment, picked)
        order = {r.trial.number: (i + 1, r) for i, r in enumerate(ranked)}
        rows = [self._row(info.study_id, t, *order.get(t.number, (None, None)))
                for t in trials]
        by_number = {r["number"]: r for r in rows}
        best = ranked[0] if ranked and ranked[0].feasible else None
        command, notes = ranking.export_command(  # the URL as shown: password hidden
            name, stored, picked, export_flags or set(), storage.url if self.url else None)
        summary = study_row(info)
        # counts from the same read as the table, so the two never disagree on the page
        summary["counts"] = {s.value: sum(t.state is s for t in trials) for s in TrialState}
        summary["finished"] = sum(t.state.finished for t in trials)
        if summary["n_trials"]:
            summary["progress"] = min(1.0, summary["finished"] / summary["n_trials"])
        page = {
            "version": version,
            "study": summary,
            "trials": rows,
            "plots": all_series(trials, live),
            "ranking": {"stored": stored, "chosen": picked,
                        "order": [r.trial.number for r in ranked],
                        "best": None if best is None else by_number[best.trial.number],
                        "command": command if best is not None else None,
                        "notes": notes},
        }
        with self._cache_lock:
            self._pages.pop(key, None)
            self._pages[key] = (page, time.monotonic(), time.monotonic() - started)
            while len(self._pages) > 8:  # a few settings of a few studies
                self._pages.pop(next(iter(self._pages)))
        return page

    def _row(self, study_id: int, t: TrialRecord, rank: int | None,
             ranked: ranking.Ranked | None) -> dict[str, Any]:
        """trial_row, with the part that cannot change cached for finished trials."""
        if not t.state.finished:
            return trial_row(t, rank, ranked)
        key = (study_id, t.number)
        with self._cache_lock:
            base = self._rows.get(key)
        if base is None:
            base = trial_row(t)
            with self._cache_lock:
                self._rows[key] = base
        return {**base, **_ranked_fields(t, rank, ranked)}

    def trial(self, name: str, number: int) -> dict[str, Any]:
        storage = self.storage()
        info = self.info(name)
        if not 0 <= number < info.n_stored:  # numbers are dense: 0 .. n-1
            raise NotFound(f"study {name!r} has no trial number {number}; its trials are "
                           f"0..{info.n_stored - 1}" if info.n_stored else
                           f"study {name!r} has no trials yet")
        t = storage.get_trial(name, number)
        live = {}
        if t.metrics is None:
            live = {number: storage.get_intermediates(name, number)}
        checkpoints = [a.path for a in storage.get_artifacts(name, number)
                       if a.kind == "checkpoint"]
        m = t.metrics
        return {
            "study": info.name,
            "row": trial_row(t),
            "candidate": json.dumps(dict(t.candidate), indent=2, sort_keys=True),
            "assignment": json.dumps(dict(t.assignment), indent=2, sort_keys=True),
            "meta": json.dumps(dict(t.meta), indent=2, sort_keys=True, default=str),
            "cost": {} if m is None else m.cost.to_dict(),
            # a multi-task trial: each task's validation metric (`metric` is their mean)
            "tasks": {} if m is None else m.task_scores,
            "training": {} if m is None else {
                "metric_name": m.metric_name, "steps": m.steps, "train_loss": m.train_loss,
                "train_seconds": m.train_seconds, "eval_seconds": m.eval_seconds,
                "attempts": t.attempts, "warm_start_from": t.warm_start_from},
            "error": t.error,
            "checkpoint": (m.checkpoint if m is not None and m.checkpoint else None)
                          or (checkpoints[0] if checkpoints else None),
            "curve": curve_series([t], live),
        }


def study_row(info: Any) -> dict[str, Any]:
    total = info.n_trials
    return {"name": info.name, "status": info.status, "finished": info.n_finished,
            "n_trials": total, "counts": dict(info.counts),
            "progress": None if not total else min(1.0, info.n_finished / total),
            "best_reward": _num(info.best_reward), "controller": info.controller,
            "model": info.experiment.get("model"), "created_at": info.created_at,
            "updated_at": info.updated_at}


def trial_row(t: TrialRecord, rank: int | None = None,
              ranked: ranking.Ranked | None = None) -> dict[str, Any]:
    """One trial as a table row; with `ranked`, its reward and feasibility are re-scored."""
    m = t.metrics
    cost = None if m is None else m.cost
    end = t.finished_at if t.finished_at is not None else (
        time.time() if t.state is TrialState.RUNNING else None)
    return {
        "number": t.number,
        "state": t.state.value,
        "candidate": candidate_summary(t.candidate),
        "learning_rate": _num(learning_rate(t)),
        "metric": None if m is None else _num(m.metric),
        "params_pct": None if cost is None else _num(100 * cost.params_ratio),
        "flops_pct": None if cost is None else _num(100 * cost.deployed_flops_ratio),
        "latency_pct": (None if cost is None or cost.latency_ratio is None
                        else _num(100 * cost.latency_ratio)),
        **_ranked_fields(t, rank, ranked),
        "stored_reward": _num(t.reward),
        "duration": None if t.started_at is None or end is None else max(0.0, end - t.started_at),
        "worker": t.worker,
        "recipe": recipe(t),
        "error": None if not t.error else t.error.strip().splitlines()[0][:200],
    }


def _ranked_fields(t: TrialRecord, rank: int | None,
                   ranked: ranking.Ranked | None) -> dict[str, Any]:
    return {"rank": rank,
            "reward": _num(ranked.reward if ranked is not None else t.reward),
            "feasible": ranked.feasible if ranked is not None else t.feasible,
            "reasons": list(ranked.reasons) if ranked is not None else []}


REFRESH_S = 10  # a page with nothing new still gets fresh data this often (durations...)
INFO_MAX_AGE_S = 0.5  # polls of one study within this share one read of its row
MIN_GAP_S = 1.0  # full reads of one study's trials at most this often...
DUTY_GAP = 20    # ...and at most 1/20 of the time: after a 0.3 s read, wait 6 s


def _version(info: Any, picked: Mapping[str, Any]) -> str:
    """Changes whenever the study row shows a change: every trial created, started or
    finished moves a state count, and the search sets the status at start and end."""
    import hashlib

    key = json.dumps([info.study_id, info.name, info.status, info.counts, info.n_trials,
                      info.updated_at, info.best_reward, picked,
                      int(time.time() // REFRESH_S)], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def candidate_summary(candidate: Mapping[str, Any]) -> str:
    from autopeft.candidate import Candidate

    try:
        return Candidate.from_dict(candidate).summary()
    except Exception:  # a candidate this autopeft cannot parse still shows as JSON
        return json.dumps(dict(candidate), sort_keys=True)


def learning_rate(t: TrialRecord) -> Any:
    hyper = t.candidate.get("hyper") or {}
    return hyper.get("learning_rate", t.assignment.get("learning_rate"))


def recipe(t: TrialRecord) -> str | None:
    """The recipe a trial came from (the recipes controller writes meta["recipe"])."""
    value = (t.meta or {}).get("recipe")
    if value in (None, False, ""):
        return None
    return "yes" if value is True else str(value)


def _num(x: Any) -> Any:
    """JSON has no NaN or inf: they show as missing."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
