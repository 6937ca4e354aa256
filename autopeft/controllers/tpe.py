"""TPE through Optuna's ask-and-tell, on an in-memory study the controller owns.

Each decision becomes an Optuna distribution: categorical and bool decisions are sampled as
an index into `options()` (Optuna's choices must be scalars; target sets and layer specs are
lists), int and float ranges as Int/FloatDistribution. Conditions are honoured
define-by-run: `space.walk` asks only for the active decisions.

State: the controller keeps one entry per Optuna trial (assignment, state, values and the
sampler's system attributes), and proposal k is sampled by a sampler seeded with (seed, k).
So the in-memory study can be rebuilt exactly from the saved entries, or from the study's
finished records (`rebuild`) — the controller is stateless in the sense of the resume rule.

A PRUNED trial counts as complete with the values of its last report: a lower bound on
what it would have reached, and exactly what the pruner judged it on.
"""
from __future__ import annotations

import contextlib
import json
import logging
import warnings
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from autopeft._imports import require
from autopeft.controllers.base import _MAX_TRIALS, Ask, Controller, Setting, reward_of
from autopeft.records import Proposal, TrialRecord

logger = logging.getLogger(__name__)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _indexed(decision: Any) -> bool:
    """Sampled as an index into options(): categoricals and bools (Optuna's choices must
    be scalars; target sets and layer specs are lists), and log ranges with a step, which
    Optuna's distributions cannot express."""
    return decision.kind in ("categorical", "bool") or bool(
        decision.log and decision.step and decision.step != 1)


def distribution(decision: Any) -> Any:
    d = require("optuna").distributions
    if _indexed(decision):
        return d.CategoricalDistribution(tuple(range(len(decision.options()))))
    if decision.kind == "int":
        return d.IntDistribution(int(decision.low), int(decision.high), log=bool(decision.log),
                                 step=int(decision.step or 1))
    return d.FloatDistribution(float(decision.low), float(decision.high),
                               log=bool(decision.log), step=decision.step or None)


def to_param(decision: Any, value: Any) -> Any:
    """The Optuna parameter value for a space value (an option index when indexed)."""
    if _indexed(decision):
        keys = [_key(o) for o in decision.options()]
        if _key(value) not in keys:
            raise ValueError(f"{value!r} is not an option of decision {decision.name!r}")
        return keys.index(_key(value))
    return int(value) if decision.kind == "int" else float(value)


def from_param(decision: Any, param: Any) -> Any:
    if _indexed(decision):
        return decision.options()[int(param)]
    return int(param) if decision.kind == "int" else float(param)


def optuna_storage(study: Any) -> tuple[Any, int]:
    """(storage, study id) of an Optuna study: the one place that reaches Optuna's private
    `_storage`/`_study_id`. Optuna has no public getter or setter for the system
    attributes its samplers keep (NSGA-II's generations, per-trial sampler notes), which
    the controller state must save and restore."""
    return study._storage, study._study_id


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs every tell at INFO and warns on experimental options; a library that
    embeds it should not. Restores the caller's verbosity afterwards."""
    optuna = require("optuna")
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)


class OptunaController(Controller):
    """Shared by tpe, motpe, nsga2: subclasses give directions, a sampler and values()."""

    stateless = True
    directions: Sequence[str] = ("maximize",)

    def __init__(self, space: Any, *, seed: int, **settings: Any) -> None:
        super().__init__(space, seed=seed, **settings)
        self._decisions = {d.name: d for d in space.decisions}
        # one entry per Optuna trial, in Optuna's numbering: assignment, state, values,
        # ask index (None for trials told without being asked), trial number, attrs
        self._entries: list[dict[str, Any]] = []
        self._study: Any = None
        self._study_attrs_saved: dict[str, Any] = {}

    # -- subclass hooks -------------------------------------------------------------
    def _make_sampler(self, seed: int) -> Any:
        raise NotImplementedError

    def _values(self, record: TrialRecord) -> list[float] | None:
        r = reward_of(record)
        return None if r is None else [r]

    # -- ask / tell -----------------------------------------------------------------
    def _ask(self) -> Ask:
        optuna = require("optuna")
        study = self._get_study()
        seed = int(np.random.SeedSequence([self.seed, self.asked]).generate_state(1)[0])
        study.sampler = self._make_sampler(seed)
        with quiet_optuna():
            trial = study.ask()

            def suggest(decision: Any) -> Any:
                dist = distribution(decision)
                if isinstance(dist, optuna.distributions.CategoricalDistribution):
                    p = trial.suggest_categorical(decision.name, dist.choices)
                elif isinstance(dist, optuna.distributions.IntDistribution):
                    p = trial.suggest_int(decision.name, dist.low, dist.high, step=dist.step,
                                          log=dist.log)
                else:
                    p = trial.suggest_float(decision.name, dist.low, dist.high, step=dist.step,
                                            log=dist.log)
                return from_param(decision, p)

            assignment = self.space.walk(suggest)
        self._entries.append({"ask": self.asked, "number": None, "state": "running",
                              "assignment": assignment, "values": None,
                              "attrs": self._trial_attrs(trial.number)})
        return Proposal(assignment, meta={"ask": self.asked})

    def _tell(self, record: TrialRecord) -> None:
        values = self._values(record)
        index = self._find_running(record)
        if index is None:  # never asked by this state: an ordinary observation
            self._entries.append({"ask": None, "number": record.number, "state": "running",
                                  "assignment": dict(record.assignment), "values": None,
                                  "attrs": {}})
            index = len(self._entries) - 1
            if self._study is not None:
                self._add(self._study, self._entries[index])
        entry = self._entries[index]
        entry.update(number=record.number, values=values,
                     state="complete" if values is not None else "failed")
        if self._study is not None:
            optuna = require("optuna")
            with quiet_optuna():
                if values is None:
                    self._study.tell(index, state=optuna.trial.TrialState.FAIL)
                else:
                    self._study.tell(index, values if len(values) > 1 else values[0])
            entry["attrs"] = self._trial_attrs(index)

    def _find_running(self, record: TrialRecord) -> int | None:
        ask = record.meta.get("ask") if record.meta else None
        running = [i for i, e in enumerate(self._entries) if e["state"] == "running"]
        for i in running:
            if ask is not None and self._entries[i]["ask"] == ask:
                return i
        want = _key(dict(record.assignment))
        for i in running:  # a re-run of an interrupted trial whose meta was lost
            if _key(self._entries[i]["assignment"]) == want:
                return i
        return None

    def rebuild(self, records: Iterable[TrialRecord]) -> None:
        """Finished trials are told and live ones enter as running, all in trial order:
        the same Optuna study (running trials included, which constant_liar uses) that
        the uninterrupted controller had."""
        records = sorted(records, key=lambda r: r.number)
        self.asked = max([self.asked] + [r.number + 1 for r in records])
        if not self.stateless:
            logger.warning("%s: rebuilding from %d trial(s) is approximate", self.name,
                           len(records))
        for r in records:
            if r.number in self.told or self._find_running(r) is not None:
                continue
            if r.state.finished:
                self.tell(r)
                continue
            self._entries.append({"ask": (r.meta or {}).get("ask", r.number),
                                  "number": r.number, "state": "running",
                                  "assignment": dict(r.assignment), "values": None,
                                  "attrs": {}})
            if self._study is not None:
                self._add(self._study, self._entries[-1])

    # -- the in-memory Optuna study -------------------------------------------------
    def _get_study(self) -> Any:
        if self._study is None:
            optuna = require("optuna")
            with quiet_optuna():
                self._study = optuna.create_study(directions=list(self.directions))
                for entry in self._entries:
                    self._add(self._study, entry)
                # samplers such as NSGA-II cache their generations in study attributes
                storage, study_id = optuna_storage(self._study)
                for k, v in self._study_attrs_saved.items():
                    storage.set_study_system_attr(study_id, k, v)
        return self._study

    def _add(self, study: Any, entry: Mapping[str, Any]) -> None:
        optuna = require("optuna")
        params, dists = {}, {}
        for name, value in entry["assignment"].items():
            if name in self._decisions:
                dec = self._decisions[name]
                params[name], dists[name] = to_param(dec, value), distribution(dec)
        state = {"running": optuna.trial.TrialState.RUNNING,
                 "complete": optuna.trial.TrialState.COMPLETE,
                 "failed": optuna.trial.TrialState.FAIL}[entry["state"]]
        study.add_trial(optuna.trial.create_trial(
            state=state, params=params, distributions=dists, values=entry["values"],
            system_attrs=dict(entry.get("attrs") or {})))

    def _trial_attrs(self, index: int) -> dict[str, Any]:
        storage, study_id = optuna_storage(self._study)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, index)
        attrs = storage.get_trial_system_attrs(trial_id)
        return json.loads(json.dumps(attrs))  # JSON-safe copy

    # -- state --------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        attrs = {}
        if self._study is not None:
            storage, study_id = optuna_storage(self._study)
            attrs = storage.get_study_system_attrs(study_id)
        else:
            attrs = dict(self._study_attrs_saved)
        return {"entries": json.loads(json.dumps(self._entries)),
                "study_attrs": json.loads(json.dumps(attrs))}

    def _load(self, own: Mapping[str, Any]) -> None:
        self._entries = [dict(e) for e in own["entries"]]
        self._study_attrs_saved = dict(own.get("study_attrs") or {})
        self._study = None  # rebuilt on the next ask

    # -- results ------------------------------------------------------------------
    def observations(self) -> list[tuple[int | None, dict[str, Any], list[float]]]:
        """(trial number, assignment, values) of every trial told with values."""
        return [(e["number"], e["assignment"], list(e["values"]))
                for e in self._entries if e["values"] is not None]


# TPE's settings, shared by the single- and multi-objective TPE controllers.
TPE_SETTINGS = {
    "max_trials": _MAX_TRIALS,
    "n_startup_trials": Setting(10, "int", "random proposals before TPE starts", low=0),
    "n_ei_candidates": Setting(24, "int", "candidates scored per parameter", low=1),
    "multivariate": Setting(True, "bool", "model parameters jointly (Falkner et al. 2018)"),
    "constant_liar": Setting(True, "bool", "avoid proposing what is already running"),
}


def tpe_sampler(settings: Mapping[str, Any], seed: int, *, group: bool) -> Any:
    """Optuna's TPESampler from TPE_SETTINGS values (`group` needs `multivariate`)."""
    with quiet_optuna():
        return require("optuna").samplers.TPESampler(
            seed=seed, n_startup_trials=settings["n_startup_trials"],
            n_ei_candidates=settings["n_ei_candidates"],
            multivariate=settings["multivariate"],
            group=group and settings["multivariate"],
            constant_liar=settings["constant_liar"])


class TPEController(OptunaController):
    name = "tpe"
    SETTINGS = {
        **TPE_SETTINGS,
        "group": Setting(True, "bool", "split the joint model by conditional subspaces"),
    }

    def _make_sampler(self, seed: int) -> Any:
        return tpe_sampler(self.settings, seed, group=self.settings["group"])
