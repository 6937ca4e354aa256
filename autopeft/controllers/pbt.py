"""Population based training (Jaderberg et al. 2017), synchronous rounds.

Each of `population_size` members is a chain of trials, one per round. Round 0 samples
every member fresh. After a round is fully told, members are ranked by reward (a failed
trial ranks last); each member in the bottom `quantile` -- and every member whose trial
failed -- exploits: it copies the config and adapter weights of a member drawn from the
top `quantile` (Proposal.warm_start_from = that member's trial of the last round) and
explores: every decision matching `explore` (learning rate, LoRA alpha, dropout by
default) is multiplied by one of `perturb_factors` or, with `resample_probability`,
drawn afresh within its range. The other members continue from their own last trial.
Proposal.meta carries member, round and parent (the member copied, or None).

`inherit_weights: false` is the control for weight inheritance: the rounds, the ranking,
exploit and explore are the same (same seed, same configs and parents), but no proposal
carries warm_start_from, so no weights travel: an exploiting member copies only its
parent's config, and every member, the continuing ones too, trains each round from fresh
weights (PBT as an evolutionary search over configs; what a replay without weights
measures). experiments/bench_pbt.py compares the two in real runs.

The proposals of round r depend only on (seed, r) and the results of round r-1, so
`rebuild` from the study's trials (their meta) reaches the same state as the saved one.
"""
from __future__ import annotations

import fnmatch
import logging
import math
from typing import Any, Iterable, Mapping

import numpy as np

from autopeft.controllers.base import _MAX_TRIALS, Ask, Controller, Setting, reward_of
from autopeft.records import Proposal, TrialRecord, TrialState

logger = logging.getLogger(__name__)


def resample(d: Any, rng: np.random.Generator) -> Any:
    """A fresh value of decision d: uniform (log-uniform for log ranges) within its range,
    on its step grid; a uniform option for a categorical."""
    if d.kind not in ("int", "float"):
        opts = d.options()
        return opts[int(rng.integers(len(opts)))]
    if d.log:
        v = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
    else:
        v = rng.uniform(d.low, d.high)
    return snap(d, v)


def snap(d: Any, v: float) -> int | float:
    """v clipped to d's range, on its step grid, int for int decisions."""
    v = min(max(v, d.low), d.high)
    if d.step:
        v = d.low + round((v - d.low) / d.step) * d.step
    return int(round(v)) if d.kind == "int" else float(f"{v:.10g}")


class PBTController(Controller):
    name = "pbt"
    SETTINGS = {
        "max_trials": _MAX_TRIALS,
        "population_size": Setting(8, "int", "members trained side by side", low=2),
        "rounds": Setting(10, "int", "rounds (trials per member); then ask -> None", low=1),
        "quantile": Setting(0.25, "float", "fraction that exploits / is exploited",
                            low=0.0, high=0.5),
        "explore": Setting(["*hp.learning_rate", "*.alpha", "*.dropout"], "str_list",
                           "decisions perturbed on exploit (fnmatch patterns)"),
        "perturb_factors": Setting([0.8, 1.2], "float_list", "multipliers for explore"),
        "resample_probability": Setting(0.25, "float", "resample instead of perturb",
                                        low=0.0, high=1.0),
        "inherit_weights": Setting(True, "bool", "warm-start from checkpoints: an exploiting "
                                   "member from its parent's, the others from their own "
                                   "(false: every trial trains from fresh weights and "
                                   "exploit copies the config only)"),
    }

    def __init__(self, space: Any, *, seed: int, **settings: Any) -> None:
        super().__init__(space, seed=seed, **settings)
        parents = {d.parent for d in space.decisions if d.parent}
        # a decision others depend on is never explored: it would switch them on or off
        self._explorable = {d.name: d for d in space.decisions if d.name not in parents
                            and any(fnmatch.fnmatchcase(d.name, p)
                                    for p in self.settings["explore"])}
        self.round = 0
        # per member: assignment, last trial number and reward of its last finished round
        self.members: list[dict[str, Any]] = []
        self._queue: list[dict[str, Any]] | None = None  # this round's proposals to hand out
        self._results: dict[int, dict[str, Any]] = {}    # member -> this round's result

    # -- rounds -------------------------------------------------------------------
    def _plan(self) -> list[dict[str, Any]]:
        rng = np.random.default_rng([self.seed, self.round])
        n = self.settings["population_size"]
        if self.round == 0:
            return [{"member": m, "assignment": self.space.sample(rng), "warm": None,
                     "parent": None} for m in range(n)]
        ranked = sorted(self.members, key=lambda m: (
            -(m["reward"] if m["reward"] is not None else -math.inf), m["id"]))
        q = max(1, int(math.floor(n * self.settings["quantile"])))
        top = [m for m in ranked[:q] if m["reward"] is not None]
        bottom = {m["id"] for m in ranked[n - q:]}
        inherit = self.settings["inherit_weights"]
        plan = []
        for m in self.members:
            if m["id"] in bottom or m["reward"] is None:
                if top:
                    parent = top[int(rng.integers(len(top)))]
                    plan.append({"member": m["id"], "parent": parent["id"],
                                 "assignment": self._explore(parent["assignment"], rng),
                                 "warm": parent["trial"] if inherit else None})
                else:  # the whole top failed: nothing to copy, start over
                    plan.append({"member": m["id"], "parent": None, "warm": None,
                                 "assignment": self.space.sample(rng)})
            else:
                plan.append({"member": m["id"], "parent": None,
                             "warm": m["trial"] if inherit else None,
                             "assignment": dict(m["assignment"])})
        return plan

    def _explore(self, assignment: Mapping[str, Any], rng: np.random.Generator) -> dict:
        out = dict(assignment)
        for name, d in self._explorable.items():
            if name not in out:
                continue  # inactive in this config
            if rng.random() < self.settings["resample_probability"]:
                out[name] = resample(d, rng)
                continue
            factor = float(rng.choice(self.settings["perturb_factors"]))
            if d.kind in ("int", "float"):
                out[name] = snap(d, out[name] * factor)
            else:  # numeric choices move one option up or down; others are resampled
                opts = list(d.options())
                if all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in opts):
                    order = sorted(range(len(opts)), key=lambda i: opts[i])
                    pos = order.index(opts.index(out[name]))
                    pos = min(max(pos + (1 if factor > 1 else -1), 0), len(opts) - 1)
                    out[name] = opts[order[pos]]
                else:
                    out[name] = resample(d, rng)
        return out

    def _current(self) -> list[dict[str, Any]]:
        if self._queue is None:
            self._queue = self._plan()
        return self._queue

    def _advance(self) -> None:
        """All members told for this round: their results become the population."""
        if self.round == 0:
            self.members = [{"id": m} for m in range(self.settings["population_size"])]
        for m in self.members:
            res = self._results[m["id"]]
            m.update(assignment=res["assignment"], trial=res["trial"], reward=res["reward"])
        logger.debug("pbt round %d done; best reward %s", self.round,
                     max((m["reward"] for m in self.members if m["reward"] is not None),
                         default=None))
        self.round += 1
        self._queue, self._results = None, {}

    # -- ask / tell -----------------------------------------------------------------
    def _ask(self) -> Ask:
        if self.round >= self.settings["rounds"]:
            return None
        queue = self._current()
        if not queue:
            return "wait"
        p = queue.pop(0)
        return Proposal(p["assignment"], warm_start_from=p["warm"],
                        meta={"member": p["member"], "round": self.round,
                              "parent": p["parent"], "ask": self.asked})

    def _tell(self, record: TrialRecord) -> None:
        meta = record.meta or {}
        member, rnd = meta.get("member"), meta.get("round")
        if rnd != self.round or member in self._results or not isinstance(member, int):
            logger.debug("pbt: trial %d (member %s, round %s) is not part of round %d; kept "
                         "as an observation only", record.number, member, rnd, self.round)
            return
        # a re-run of an interrupted trial may come without having been asked by this state
        self._queue = [p for p in self._current() if p["member"] != member]
        ok = record.state is not TrialState.FAILED
        self._results[member] = {"assignment": dict(record.assignment),
                                 "trial": record.number if ok else None,
                                 "reward": reward_of(record) if ok else None}
        if len(self._results) == self.settings["population_size"]:
            self._advance()

    def rebuild(self, records: Iterable[TrialRecord]) -> None:
        """Exact: replay finished trials round by round, then drop the live ones from the
        queue of the round they belong to (they are re-run by the study)."""
        records = list(records)
        self.asked = max([self.asked] + [r.number + 1 for r in records])
        self.catch_up(records)
        live = {r.meta.get("member") for r in records if not r.state.finished
                and (r.meta or {}).get("round") == self.round}
        self._queue = [p for p in self._current() if p["member"] not in live]

    # -- state --------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"round": self.round, "members": self.members, "queue": self._queue,
                "results": {str(k): v for k, v in self._results.items()}}

    def _load(self, own: Mapping[str, Any]) -> None:
        self.round = int(own["round"])
        self.members = [dict(m) for m in own["members"]]
        self._queue = None if own["queue"] is None else [dict(p) for p in own["queue"]]
        self._results = {int(k): dict(v) for k, v in own["results"].items()}
