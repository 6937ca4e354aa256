"""RecipesFirst: propose the standard recipes the space can express, then the inner
controller's proposals.

    ctrl = make_controller("tpe", bound, seed=0, recipes=True)

- Recipes come first, in autopeft.recipes.RECIPES order, each as an ordinary Proposal with
  meta {"recipe": name}; they count in the budget (with max_trials below the number of
  recipes, the first max_trials run: `budget_note` says which).
- The inner controller is told every finished trial, recipes included, so TPE and LSTM
  learn from them as from any observation. It starts once every recipe has finished
  ("wait" until then) and is told the recipes in trial order, so its history is the same
  however the recipe trials interleaved; its ask counter counts the recipes too, so its
  proposal k still draws from the stream of trial k (rebuild stays exact for stateless
  controllers).
- State: the inner state plus the recipes proposed; `catch_up` and `rebuild` also read
  which recipes were proposed from the trials' meta, so a resume never repeats one.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

from autopeft.controllers.base import Ask, Controller, ControllerStateError
from autopeft.records import Proposal, TrialRecord

logger = logging.getLogger(__name__)

STATE_KEY = "recipes_first"


class RecipesFirst(Controller):
    """Wraps `inner`; see the module docstring. Not registered as a preset: make_controller
    wraps any controller with it (recipes=True)."""

    def __init__(self, inner: Controller, recipes: Iterable[Any] | None = None,
                 skipped: Iterable[str] | None = None) -> None:
        if recipes is None:
            from autopeft.recipes import express

            recipes, skipped = express(inner.space)
        # (Controller.__init__ is not called: the bookkeeping is the inner controller's)
        self.inner = inner
        self.recipes = list(recipes)
        self.skipped = list(skipped or ())
        self.proposed: set[str] = set()
        self.flushed = not self.recipes  # every recipe told to the inner controller
        self._held: dict[int, TrialRecord] = {}  # finished recipes, not told yet
        self.preset = getattr(inner, "preset", None)

    # the inner controller's identity and bookkeeping are the wrapper's
    name = property(lambda self: self.inner.name)  # type: ignore[assignment]
    stateless = property(lambda self: self.inner.stateless)  # type: ignore[assignment]
    space = property(lambda self: self.inner.space)
    seed = property(lambda self: self.inner.seed)
    asked = property(lambda self: self.inner.asked)
    told = property(lambda self: self.inner.told)

    @property
    def settings(self) -> dict[str, Any]:
        # stored with the study: resume rebuilds the wrapper from recipes=True
        return {**self.inner.settings, "recipes": True}

    def notes(self, n_trials: int | None = None) -> list[str]:
        """What a user should know: skipped recipes, and those the budget leaves out."""
        out = list(self.skipped)
        note = budget_note([r.name for r in self.recipes], n_trials)
        return out + ([note] if note else [])

    # -- the interface --------------------------------------------------------------
    def ask(self) -> Ask:
        limit = self.inner.settings.get("max_trials")
        if limit is not None and self.inner.asked >= limit:
            return None
        nxt = next((r for r in self.recipes if r.name not in self.proposed), None)
        if nxt is not None:
            self.proposed.add(nxt.name)
            self.inner.asked += 1  # the recipe is trial `asked`: the inner stream skips it
            logger.info("proposing recipe %s", nxt.name)
            return Proposal(dict(nxt.assignment), meta={"recipe": nxt.name})
        if not self.flushed:
            return "wait"  # the inner controller starts once it knows every recipe's result
        return self.inner.ask()

    def tell(self, record: TrialRecord) -> None:
        self._note(record)
        if self.flushed or not _recipe(record):
            self.inner.tell(record)
            return
        self._held[record.number] = record
        self._flush()

    def state_dict(self) -> dict[str, Any]:
        # the inner controller's state (same keys, so readers of a stored state see the
        # controller it belongs to) plus the recipes proposed; recipes held back are told
        # again by catch_up on resume
        return {**self.inner.state_dict(),
                STATE_KEY: {"proposed": sorted(self.proposed), "flushed": self.flushed}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if STATE_KEY not in state:
            raise ControllerStateError(
                "the saved state was written without recipes first\n  fix: resume the study "
                "as it was created (a study created with --no-recipes resumes without them)")
        self.inner.load_state_dict({k: v for k, v in state.items() if k != STATE_KEY})
        own = state[STATE_KEY]
        self.proposed, self.flushed = set(own["proposed"]), bool(own["flushed"])
        self._held = {}

    def catch_up(self, records: Iterable[TrialRecord]) -> int:
        records = list(records)
        for r in records:
            self._note(r)
        if self.flushed:
            return self.inner.catch_up(records)
        before = len(self._held)
        self._held.update({r.number: r for r in records if r.state.finished and _recipe(r)})
        new = len(self._held) - before
        self._flush()
        return new + self.inner.catch_up([r for r in records if not _recipe(r)])

    def rebuild(self, records: Iterable[TrialRecord]) -> None:
        records = sorted(records, key=lambda r: r.number)
        for r in records:
            self._note(r)
        recipes = [r for r in records if _recipe(r)]
        if self._all_proposed() and all(r.state.finished for r in recipes):
            self.flushed = True  # the inner controller knew them all, in trial order
            self.inner.rebuild(records)
            return
        self._held = {r.number: r for r in recipes if r.state.finished}
        self.inner.rebuild([r for r in records if not _recipe(r)])
        self.inner.asked = max([self.inner.asked] + [r.number + 1 for r in records])

    def _flush(self) -> int:
        """Once every recipe has finished, tell them to the inner controller in trial
        order (so its history does not depend on which finished first)."""
        if self.flushed or not self._all_proposed() or len(self._held) < len(self.recipes):
            return 0
        for number in sorted(self._held):
            self.inner.tell(self._held[number])
        n, self._held, self.flushed = len(self._held), {}, True
        return n

    def _all_proposed(self) -> bool:
        return {r.name for r in self.recipes} <= self.proposed

    def _note(self, record: TrialRecord) -> None:
        name = _recipe(record)
        if name:
            self.proposed.add(name)

    def _ask(self) -> Ask:  # the public ask() above does the work
        raise NotImplementedError

    def _tell(self, record: TrialRecord) -> None:
        raise NotImplementedError


def _recipe(record: TrialRecord) -> str | None:
    meta = record.meta or {}
    name = meta.get("recipe")
    return name if isinstance(name, str) else None


def budget_note(names: list[str], n_trials: int | None) -> str | None:
    """The note for a budget smaller than the number of recipes (None if they fit)."""
    if n_trials is None or n_trials >= len(names):
        return None
    return (f"the budget of {n_trials} trial(s) is below the {len(names)} recipes: only "
            f"{', '.join(names[:n_trials])} run (not {', '.join(names[n_trials:])}); raise "
            f"--trials to {len(names)} or more to run them all and then search")
