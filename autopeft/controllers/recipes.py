"""RecipesFirst: propose the standard recipes the space can express, then the inner
controller's proposals.

    ctrl = make_controller("tpe", bound, seed=0, recipes=True)

- Recipes come first, in autopeft.recipes.RECIPES order, each as an ordinary Proposal with
  meta {"recipe": name}; they count in the budget (with max_trials below the number of
  recipes, the first max_trials run: `budget_note` says which).
- The inner controller is told every finished trial, recipes included, so TPE and LSTM
  learn from them as from any observation; its ask counter counts the recipes too, so
  its proposal k still draws from the stream of trial k (rebuild stays exact for
  stateless controllers).
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
        if nxt is None:
            return self.inner.ask()
        self.proposed.add(nxt.name)
        self.inner.asked += 1  # the recipe is trial `asked`: the inner stream skips it
        logger.info("proposing recipe %s", nxt.name)
        return Proposal(dict(nxt.assignment), meta={"recipe": nxt.name})

    def tell(self, record: TrialRecord) -> None:
        self._note(record)
        self.inner.tell(record)

    def state_dict(self) -> dict[str, Any]:
        return {STATE_KEY: sorted(self.proposed), "inner": self.inner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if STATE_KEY not in state:
            raise ControllerStateError(
                "the saved state was written without recipes first\n  fix: resume the study "
                "as it was created (a study created with --no-recipes resumes without them)")
        self.inner.load_state_dict(state["inner"])
        self.proposed = set(state[STATE_KEY])

    def catch_up(self, records: Iterable[TrialRecord]) -> int:
        records = list(records)
        for r in records:
            self._note(r)
        return self.inner.catch_up(records)

    def rebuild(self, records: Iterable[TrialRecord]) -> None:
        records = list(records)
        for r in records:
            self._note(r)
        # a live recipe trial is not the inner controller's: it learns of it when it
        # finishes (as in the uninterrupted run); the trial still counts as an ask
        live = {r.number for r in records if not r.state.finished and _recipe(r)}
        self.inner.rebuild([r for r in records if r.number not in live])
        self.inner.asked = max([self.inner.asked] + [n + 1 for n in live])

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
