"""The Executor interface.

The study submits requests up to `capacity` at a time and collects Outcomes with
`wait`. An executor never touches storage; the study is the single writer.

Outcome.error_kind tells the study which failure policy applies (ARCHITECTURE.md §4):
  None            success: metrics is set
  "trial_failed"  the candidate failed (TrialFailedError): FAILED, no retry
  "fatal"         the setup is broken (FatalError): persist, then stop the search
  "crash"         anything else, including a worker that died: retry up to N times
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

from autopeft.records import EvalRequest, Metrics


@dataclass(frozen=True)
class Outcome:
    trial_number: int
    attempt: int
    metrics: Metrics | None = None
    error: str | None = None
    error_kind: str | None = None
    worker: str | None = None
    wall_seconds: float = 0.0


class Executor(abc.ABC):
    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """How many requests may be in flight at once."""

    @abc.abstractmethod
    def submit(self, request: EvalRequest) -> None: ...

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Block until at least one outcome is ready (or timeout); return all ready ones."""

    @property
    @abc.abstractmethod
    def in_flight(self) -> int: ...

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Stop workers; in-flight requests are abandoned (the study marks them)."""
