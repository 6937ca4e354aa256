"""Plain records that storage takes and returns (no SQLAlchemy here, so they import cheaply).

StudySpec is what a new study is created from; StudyInfo and ArtifactRecord are snapshots
read back. Trials come back as autopeft.records.TrialRecord.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from autopeft.records import TrialState

# The statuses a study can be in. "created": no trial run yet; "running": a driver is (or
# was, until it was killed) working on it; "stopped": the driver ended early on purpose
# (controller done, budget reached without all trials); "interrupted": Ctrl-C or an error
# stopped it; "finished": the trial budget is spent; "failed": a fatal error stopped it.
STUDY_STATUSES = ("created", "running", "stopped", "interrupted", "finished", "failed")


@dataclass(frozen=True)
class StudySpec:
    """Everything a study is created with; never changes afterwards (except n_trials).

    space_text is the search-space file as written, space_fingerprint its canonical hash,
    space_source the path it was read from (None for a shipped or inline space).
    versions: library name -> version (autopeft.version.library_versions()).
    """

    name: str
    space_text: str
    space_fingerprint: str
    experiment: Mapping[str, Any]
    controller: str
    seed: int
    space_source: str | None = None
    controller_settings: Mapping[str, Any] = field(default_factory=dict)
    n_trials: int | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    created_at: float | None = None  # epoch seconds; None -> now

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class StudyInfo:
    """A snapshot of one stored study and how many of its trials are in each state."""

    study_id: int
    name: str
    status: str
    space_text: str
    space_fingerprint: str
    space_source: str | None
    experiment: Mapping[str, Any]
    controller: str
    controller_settings: Mapping[str, Any]
    seed: int
    n_trials: int | None
    autopeft_version: str
    versions: Mapping[str, str]
    created_at: float
    updated_at: float
    # TrialState value -> number of trials in that state (every state present)
    counts: Mapping[str, int] = field(default_factory=dict)
    # the reward of autopeft.ranking.best: the best feasible COMPLETE trial
    best_reward: float | None = None

    @property
    def n_stored(self) -> int:
        """Trials created so far, in any state."""
        return sum(self.counts.values())

    @property
    def n_finished(self) -> int:
        return sum(self.counts.get(s.value, 0) for s in TrialState if s.finished)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["experiment"] = dict(self.experiment)
        d["controller_settings"] = dict(self.controller_settings)
        d["versions"] = dict(self.versions)
        d["counts"] = dict(self.counts)
        d["n_finished"] = self.n_finished
        return d


@dataclass(frozen=True)
class ArtifactRecord:
    """Where a file that belongs to a trial lives (kind "checkpoint": its adapter weights)."""

    trial_number: int
    kind: str
    path: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def now() -> float:
    return time.time()
