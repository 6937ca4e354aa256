"""The Controller interface: a proposer that sees only the space, Proposals and TrialRecords.

Lifecycle (the study loop drives it):

    ctrl = make_controller("tpe", space, seed=7)
    while ...:
        p = ctrl.ask()          # Proposal, "wait" (needs results first) or None (done)
        ...                     # the study creates and runs the trial
        ctrl.tell(record)       # every finished trial: COMPLETE, PRUNED or FAILED

Resume and state, one rule for every controller:

1. `state_dict()` is JSON-safe and complete; the study saves it after every ask that
   returned a Proposal and after every tell.
2. On resume the study builds the controller with the same name, settings and seed and
   calls `load_state_dict(saved)`, then `catch_up(records)` with the study's finished
   trials. `catch_up` tells only trials this state has not been told yet (the state keeps
   the told trial numbers), so it is idempotent: a crash between `finish_trial` and the
   state save loses nothing and tells nothing twice.
3. With no saved state (a lost file, a study written by something else) the study calls
   `rebuild(records)` with all of the study's trials (finished and live; trial numbers
   are taken to count the asks, as the study numbers trials 0, 1, 2... in ask order).
   For stateless controllers (`stateless = True`: random, tpe, motpe) this reproduces
   the state exactly, because they draw proposal k from a stream seeded by (seed, k) and
   keep nothing but the observations. pbt overrides `rebuild` and is exact too (its
   rounds depend only on (seed, round) and the trials' meta). For lstm and nsga2 it is a
   best effort and logs a warning.

`tell` of a trial the controller never proposed (an interrupted trial re-run from an
older state) is an ordinary observation, never an error.
"""
from __future__ import annotations

import abc
import difflib
import logging
import math
from typing import Any, ClassVar, Iterable, Literal, Mapping, Union

from autopeft.exceptions import AutoPeftError, ConfigError
from autopeft.records import Proposal, TrialRecord, TrialState
from autopeft.settings import Setting  # noqa: F401 - re-exported for controllers

logger = logging.getLogger(__name__)

Ask = Union[Proposal, Literal["wait"], None]
STATE_VERSION = 1


class ControllerStateError(AutoPeftError):
    """A saved controller state does not fit the controller it is loaded into."""


_MAX_TRIALS = Setting(None, "int", "stop proposing (ask -> None) after this many proposals",
                      nullable=True, low=1)


def resolve_settings(cls: type["Controller"], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of `cls.SETTINGS` overridden by `given`; unknown names are ConfigErrors."""
    unknown = sorted(set(given) - set(cls.SETTINGS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(cls.SETTINGS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"controller {cls.name!r} has no setting {unknown[0]!r}",
                          path=unknown[0], value=unknown[0],
                          fix=f"{hint}known settings: {sorted(cls.SETTINGS)}")
    out = {}
    for key, spec in cls.SETTINGS.items():
        out[key] = spec.check(key, given[key]) if key in given else spec.default
    return out


class Controller(abc.ABC):
    """Base class. Subclasses implement `_ask` and `_tell`, and `_state`/`_load` if they
    keep anything beyond the bookkeeping done here (ask count, told trials, budget)."""

    name: ClassVar[str] = "controller"
    stateless: ClassVar[bool] = False
    SETTINGS: ClassVar[dict[str, Setting]] = {"max_trials": _MAX_TRIALS}

    def __init__(self, space: Any, *, seed: int, **settings: Any) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.space = space
        self.seed = seed
        self.settings = resolve_settings(type(self), settings)
        self.asked = 0                    # proposals handed out so far
        self.told: set[int] = set()       # trial numbers already told
        self.preset: Any = None           # the Preset it was made from (make_controller)

    # -- the interface ------------------------------------------------------------
    def ask(self) -> Ask:
        limit = self.settings.get("max_trials")
        if limit is not None and self.asked >= limit:
            return None
        out = self._ask()
        if isinstance(out, Proposal):
            self.asked += 1
        return out

    def tell(self, record: TrialRecord) -> None:
        if not record.state.finished:
            raise ValueError(f"tell() takes finished trials only; trial {record.number} is "
                             f"{record.state.value}")
        if record.number in self.told:
            logger.debug("%s: trial %d was already told; ignored", self.name, record.number)
            return
        self.told.add(record.number)
        self._tell(record)

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.name, "version": STATE_VERSION, "seed": self.seed,
                "asked": self.asked, "told": sorted(self.told), "own": self._state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("controller") != self.name:
            raise ControllerStateError(
                f"the saved state belongs to controller {state.get('controller')!r}, not "
                f"{self.name!r}\n  fix: resume with the controller the study was created with")
        if state.get("version") != STATE_VERSION or state.get("seed") != self.seed:
            raise ControllerStateError(
                f"saved {self.name} state has version {state.get('version')} and seed "
                f"{state.get('seed')}; this controller has version {STATE_VERSION} and seed "
                f"{self.seed}\n  fix: resume with the study's own seed")
        self.asked = int(state["asked"])
        self.told = {int(n) for n in state["told"]}
        self._load(state["own"])

    def catch_up(self, records: Iterable[TrialRecord]) -> int:
        """Tell the finished records this controller has not seen, in trial order."""
        todo = sorted((r for r in records if r.state.finished and r.number not in self.told),
                      key=lambda r: r.number)
        for r in todo:
            self.tell(r)
        return len(todo)

    def rebuild(self, records: Iterable[TrialRecord]) -> None:
        """Recreate the state from the study's trials when no saved state exists."""
        records = list(records)
        if not self.stateless:
            logger.warning("%s keeps state that its trials do not hold; rebuilding it from %d "
                           "trial(s) is approximate", self.name, len(records))
        self.asked = max([self.asked] + [r.number + 1 for r in records])
        self.catch_up(records)

    # -- for subclasses -----------------------------------------------------------
    @abc.abstractmethod
    def _ask(self) -> Ask: ...

    @abc.abstractmethod
    def _tell(self, record: TrialRecord) -> None: ...

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, own: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        pass


# An infeasible trial (over a constraint of the experiment: export never offers it) is told
# with its metric lowered by the width of the widest metric range (MCC lies in [-1, 1]):
# it then ranks below every feasible trial of no larger cost, so a controller learns to
# leave the infeasible region instead of chasing its high metric. Constraints bound costs,
# so the infeasible trials are the costly ones.
INFEASIBLE_PENALTY = 2.0


def reward_of(record: TrialRecord) -> float | None:
    """The scalar a single-objective controller maximises, or None for a failed trial;
    lowered by INFEASIBLE_PENALTY when the trial is infeasible."""
    if record.state is TrialState.FAILED or record.reward is None:
        return None
    r = float(record.reward)
    if record.feasible is False:
        r -= INFEASIBLE_PENALTY
    return r if math.isfinite(r) else None


def objectives_of(record: TrialRecord) -> tuple[float, float, float] | None:
    """(metric, params_ratio, flops_ratio): metric up, the two costs down; None if failed.
    An infeasible trial's metric is lowered by INFEASIBLE_PENALTY, as in reward_of."""
    m = record.metrics
    if record.state is TrialState.FAILED or m is None:
        return None
    metric = float(m.metric) - (INFEASIBLE_PENALTY if record.feasible is False else 0.0)
    vals = (metric, float(m.cost.params_ratio), m.cost.deployed_flops_ratio)
    return vals if all(math.isfinite(v) for v in vals) else None
