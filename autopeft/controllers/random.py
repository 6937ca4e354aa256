"""Uniform random search: the baseline every other controller must beat.

Proposal k is drawn from its own Generator seeded with (seed, k), so the stream depends on
nothing but the seed and the count: state and rebuild are trivial and exact.
"""
from __future__ import annotations

import numpy as np

from autopeft.controllers.base import Ask, Controller
from autopeft.records import Proposal, TrialRecord


class RandomController(Controller):
    name = "random"
    stateless = True

    def _ask(self) -> Ask:
        rng = np.random.default_rng([self.seed, self.asked])
        return Proposal(self.space.sample(rng), meta={"ask": self.asked})

    def _tell(self, record: TrialRecord) -> None:
        pass  # random search learns nothing
