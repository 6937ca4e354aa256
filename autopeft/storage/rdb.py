"""Storage: studies, trials and what belongs to them, in SQLite or PostgreSQL."""
from __future__ import annotations

import contextlib
import logging
import math
from collections import defaultdict
from typing import Any, Iterable, Iterator, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from autopeft.exceptions import StorageError, StudyExistsError, StudyNotFoundError
from autopeft.records import Metrics, TrialRecord, TrialState
from autopeft.storage.engine import WRITE_OPTION, describe_error
from autopeft.storage.models import (
    ArtifactRow,
    ControllerStateRow,
    IntermediateRow,
    StudyAttrRow,
    StudyRow,
    TrialRow,
)
from autopeft.storage.snapshots import STUDY_STATUSES, ArtifactRecord, StudyInfo, StudySpec, now
from autopeft.storage.values import (
    MAX_NAME_LENGTH,
    check_name,
    finite_or_none,
    plain_json,
    spec_values,
    study_info,
    to_int,
    to_n_trials,
    to_state,
    trial_record,
)
from autopeft.version import __version__

logger = logging.getLogger(__name__)

_UNFINISHED = tuple(s.value for s in TrialState if not s.finished)
_FINISHED = tuple(s.value for s in TrialState if s.finished)


class Storage:
    """The one place studies and trials are kept. Open it with autopeft.storage.open_storage.

    The study loop is its only writer; controllers, executors and evaluators never see it.

    Invariants (the contract suite in tests/test_storage.py checks each, on every backend):

    - Study names are unique. create_study on a taken name raises StudyExistsError naming
      `autopeft resume NAME`; any method given an unknown name raises StudyNotFoundError
      listing the names that exist.
    - Trial numbers are dense per study: 0, 1, 2, ... in creation order, never reused,
      never skipped, also with several writers at once (the study row is locked while the
      next number is taken on PostgreSQL; SQLite write transactions take the write lock at
      BEGIN).
    - Finished trials (COMPLETE, PRUNED, FAILED) are immutable: finishing, starting or
      reporting to one raises StorageError; mark_interrupted and requeue_interrupted leave
      them as they are. Artifacts may still be attached to them.
    - Every method is one transaction: it commits entirely or not at all. A driver error
      rolls it back and surfaces as one StorageError naming the operation and database.
    - Returned objects (TrialRecord, StudyInfo, ArtifactRecord, dicts) are snapshots:
      changing them changes nothing stored, and later writes do not change them.
    - Values are stored as plain JSON: tuples come back as lists. Non-finite floats (NaN,
      inf) are stored as null, the same on SQLite (which cannot keep NaN) and PostgreSQL
      (whose json type rejects it): an optional number (reward, train_loss) reads back as
      None, a required one (Metrics.metric, intermediate values) as NaN.
    - Times are epoch seconds from time.time().
    """

    def __init__(self, engine: Engine, display_url: str) -> None:
        self._engine = engine
        self._write_bind = engine.execution_options(**{WRITE_OPTION: True})
        self.url = display_url

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Release the connections (the data stays)."""
        self._engine.dispose()

    def __enter__(self) -> "Storage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    @contextlib.contextmanager
    def _scope(self, action: str, *, write: bool) -> Iterator[Session]:
        """One transaction: commit at the end, roll back on any error.

        Driver errors become StorageError("... while trying to {action} ..."); autopeft's
        own errors (StudyNotFoundError...) pass through unchanged after the rollback.
        """
        session = Session(self._write_bind if write else self._engine, expire_on_commit=False,
                          autoflush=True)
        try:
            yield session
            if write:
                session.commit()
        except sa.exc.SQLAlchemyError as exc:
            self._rollback(session)
            raise StorageError(describe_error(exc, self.url, action,
                                              self._engine.url.password)) from exc
        except BaseException:  # our own errors, KeyboardInterrupt...: undo, then re-raise
            self._rollback(session)
            raise
        finally:
            session.close()

    @staticmethod
    def _rollback(session: Session) -> None:
        try:
            session.rollback()
        except sa.exc.SQLAlchemyError:  # the connection is gone; the server rolls back
            logger.debug("rollback failed", exc_info=True)

    # -- studies --------------------------------------------------------------------------
    def create_study(self, spec: StudySpec | Any = None, /, **fields: Any) -> int:
        """Store a new study; returns its id. Takes a StudySpec (or any object with its
        attributes), or its fields as keyword arguments."""
        values = spec_values(spec, fields)
        name = check_name(values["name"])
        created = float(values["created_at"]) if values["created_at"] is not None else now()
        versions = {str(k): str(v) for k, v in dict(values["versions"] or {}).items()}
        row = StudyRow(
            name=name,
            status="created",
            space_text=str(values["space_text"]),
            space_fingerprint=str(values["space_fingerprint"]),
            space_source=None if values["space_source"] is None else str(values["space_source"]),
            experiment=plain_json(values["experiment"], "the experiment"),
            controller=str(values["controller"]),
            controller_settings=plain_json(values["controller_settings"] or {},
                                           "the controller settings"),
            seed=to_int(values["seed"], "seed"),
            n_trials=None if values["n_trials"] is None else to_n_trials(values["n_trials"]),
            autopeft_version=versions.get("autopeft", __version__),
            versions=versions,
            created_at=created,
            updated_at=created,
        )
        with self._scope(f"create study {name!r}", write=True) as session:
            if session.scalar(sa.select(StudyRow.id).where(StudyRow.name == name)) is not None:
                raise self._exists(name)
            session.add(row)
            try:
                session.flush()
            except sa.exc.IntegrityError:  # created by another writer a moment ago
                raise self._exists(name) from None
            study_id = row.id
        logger.info("created study %r (id %d) in %s", name, study_id, self.url)
        return study_id

    def _exists(self, name: str) -> StudyExistsError:
        return StudyExistsError(
            f"a study named {name!r} already exists in {self.url}.\n  fix: continue it with "
            f"`autopeft resume {name}`, or choose another name for a new study")

    def get_study(self, name: str) -> StudyInfo:
        with self._scope(f"read study {name!r}", write=False) as session:
            row = self._study(session, name)
            counts, best = self._summaries(session, [row.id])
            return study_info(row, counts[row.id], best.get(row.id))

    def list_studies(self) -> list[StudyInfo]:
        """Every study, oldest first, with its trial counts and best reward."""
        with self._scope("list studies", write=False) as session:
            rows = session.scalars(sa.select(StudyRow).order_by(StudyRow.created_at,
                                                                 StudyRow.id)).all()
            counts, best = self._summaries(session, [r.id for r in rows])
            return [study_info(r, counts[r.id], best.get(r.id)) for r in rows]

    def set_study_status(self, name: str, status: str) -> None:
        if status not in STUDY_STATUSES:
            raise StorageError(f"unknown study status {status!r}; known: "
                               f"{', '.join(STUDY_STATUSES)}")
        with self._scope(f"set the status of study {name!r}", write=True) as session:
            row = self._study(session, name)
            row.status = status
            row.updated_at = now()

    def set_study_n_trials(self, name: str, n_trials: int) -> None:
        """Change the trial budget (resume --trials N)."""
        n = to_n_trials(n_trials)
        with self._scope(f"set the trial budget of study {name!r}", write=True) as session:
            row = self._study(session, name)
            row.n_trials = n
            row.updated_at = now()

    def delete_study(self, name: str) -> None:
        """Remove a study and everything stored with it (files on disk stay)."""
        with self._scope(f"delete study {name!r}", write=True) as session:
            study_id = self._study(session, name, lock=True).id
            trial_ids = sa.select(TrialRow.id).where(TrialRow.study_id == study_id)
            # Children first, explicitly: no reliance on ON DELETE CASCADE being enforced.
            session.execute(sa.delete(IntermediateRow)
                            .where(IntermediateRow.trial_id.in_(trial_ids)))
            session.execute(sa.delete(ArtifactRow).where(ArtifactRow.trial_id.in_(trial_ids)))
            session.execute(sa.delete(TrialRow).where(TrialRow.study_id == study_id))
            session.execute(sa.delete(ControllerStateRow)
                            .where(ControllerStateRow.study_id == study_id))
            session.execute(sa.delete(StudyAttrRow).where(StudyAttrRow.study_id == study_id))
            session.execute(sa.delete(StudyRow).where(StudyRow.id == study_id))
        logger.info("deleted study %r from %s", name, self.url)

    def set_study_attr(self, name: str, key: str, value: Any) -> None:
        """Store a JSON value under key (overwrites), e.g. finalize results."""
        if not isinstance(key, str) or not key or len(key) > MAX_NAME_LENGTH:
            raise StorageError(f"a study attribute key must be a non-empty string of at most "
                               f"{MAX_NAME_LENGTH} characters, got {key!r}")
        plain = plain_json(value, f"study attribute {key!r}")
        with self._scope(f"set attribute {key!r} of study {name!r}", write=True) as session:
            study_id = self._study(session, name).id
            row = session.get(StudyAttrRow, (study_id, key))
            if row is None:
                session.add(StudyAttrRow(study_id=study_id, key=key, value=plain))
            else:
                row.value = plain

    def get_study_attrs(self, name: str) -> dict[str, Any]:
        with self._scope(f"read the attributes of study {name!r}", write=False) as session:
            study_id = self._study(session, name).id
            rows = session.execute(sa.select(StudyAttrRow.key, StudyAttrRow.value)
                                   .where(StudyAttrRow.study_id == study_id)
                                   .order_by(StudyAttrRow.key)).all()
            return {k: v for k, v in rows}

    # -- controller state -----------------------------------------------------------------
    def save_controller_state(self, name: str, state: Mapping[str, Any]) -> None:
        """Replace the study's controller state (Controller.state_dict(), JSON-safe)."""
        plain = plain_json(dict(state), "the controller state")
        with self._scope(f"save the controller state of study {name!r}", write=True) as s:
            study_id = self._study(s, name).id
            row = s.get(ControllerStateRow, study_id)
            if row is None:
                s.add(ControllerStateRow(study_id=study_id, state=plain, updated_at=now()))
            else:
                row.state = plain
                row.updated_at = now()

    def load_controller_state(self, name: str) -> dict[str, Any] | None:
        """The last saved controller state, or None if none was saved."""
        with self._scope(f"load the controller state of study {name!r}", write=False) as s:
            study_id = self._study(s, name).id
            return s.scalar(sa.select(ControllerStateRow.state)
                            .where(ControllerStateRow.study_id == study_id))

    # -- trials ---------------------------------------------------------------------------
    def create_trial(self, name: str, assignment: Mapping[str, Any],
                     candidate: Mapping[str, Any], warm_start_from: int | None = None,
                     meta: Mapping[str, Any] | None = None) -> TrialRecord:
        """A new PENDING trial with the study's next number."""
        row = TrialRow(
            state=TrialState.PENDING.value,
            assignment=plain_json(dict(assignment), "the trial's assignment"),
            candidate=plain_json(dict(candidate), "the trial's candidate"),
            warm_start_from=None if warm_start_from is None else to_int(warm_start_from,
                                                                      "warm_start_from"),
            meta=plain_json(dict(meta or {}), "the trial's meta"),
            attempts=0,
            created_at=now(),
        )
        with self._scope(f"create a trial in study {name!r}", write=True) as session:
            study = self._study(session, name, lock=True)
            if row.warm_start_from is not None:
                self._trial(session, study.id, name, row.warm_start_from)
            last = session.scalar(sa.select(sa.func.max(TrialRow.number))
                                  .where(TrialRow.study_id == study.id))
            row.study_id = study.id
            row.number = 0 if last is None else last + 1
            session.add(row)
            session.flush()
            return trial_record(row)

    def get_trial(self, name: str, number: int) -> TrialRecord:
        with self._scope(f"read trial {number} of study {name!r}", write=False) as session:
            study_id = self._study(session, name).id
            return trial_record(self._trial(session, study_id, name, number))

    def get_trials(self, name: str,
                   states: Iterable[TrialState | str] | None = None) -> list[TrialRecord]:
        """The study's trials ordered by number, optionally only those in `states`."""
        wanted = None if states is None else sorted({to_state(s).value for s in states})
        with self._scope(f"read the trials of study {name!r}", write=False) as session:
            study_id = self._study(session, name).id
            query = sa.select(TrialRow).where(TrialRow.study_id == study_id)
            if wanted is not None:
                query = query.where(TrialRow.state.in_(wanted))
            return [trial_record(r) for r in session.scalars(query.order_by(TrialRow.number))]

    def set_trial_running(self, name: str, number: int, worker: str | None,
                          attempt: int = 0) -> TrialRecord:
        """Hand a trial to a worker; `attempt` is 0 for the first try (EvalRequest.attempt)."""
        attempt = to_int(attempt, "attempt")
        if attempt < 0:
            raise StorageError(f"attempt must be >= 0, got {attempt}")
        with self._scope(f"start trial {number} of study {name!r}", write=True) as session:
            row = self._live_trial(session, name, number, "start")
            row.state = TrialState.RUNNING.value
            row.worker = None if worker is None else str(worker)[:MAX_NAME_LENGTH]
            row.attempts = max(row.attempts, attempt + 1)
            row.started_at = now()
            return trial_record(row)

    def add_intermediate(self, name: str, number: int, step: int, value: float) -> None:
        """Record a report made during training; the same step again overwrites it."""
        step = to_int(step, "step")
        stored = finite_or_none(value)
        with self._scope(f"report step {step} of trial {number} in study {name!r}",
                         write=True) as session:
            trial = self._live_trial(session, name, number, "report to")
            row = session.scalar(sa.select(IntermediateRow).where(
                IntermediateRow.trial_id == trial.id, IntermediateRow.step == step))
            if row is None:
                session.add(IntermediateRow(trial_id=trial.id, step=step, value=stored))
            else:
                row.value = stored

    def get_intermediates(self, name: str, number: int) -> list[tuple[int, float]]:
        """(step, value) reports of one trial, by step (a NaN/inf report reads as NaN)."""
        with self._scope(f"read the reports of trial {number} in study {name!r}",
                         write=False) as session:
            trial = self._trial(session, self._study(session, name).id, name, number)
            rows = session.execute(sa.select(IntermediateRow.step, IntermediateRow.value)
                                   .where(IntermediateRow.trial_id == trial.id)
                                   .order_by(IntermediateRow.step)).all()
            return [(s, math.nan if v is None else v) for s, v in rows]

    def get_all_intermediates(self, name: str) -> dict[int, list[tuple[int, float]]]:
        """trial number -> its (step, value) reports by step, for every trial that has any."""
        with self._scope(f"read the reports of study {name!r}", write=False) as session:
            study_id = self._study(session, name).id
            rows = session.execute(
                sa.select(TrialRow.number, IntermediateRow.step, IntermediateRow.value)
                .join(TrialRow, TrialRow.id == IntermediateRow.trial_id)
                .where(TrialRow.study_id == study_id)
                .order_by(TrialRow.number, IntermediateRow.step)).all()
        out: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for number, step, value in rows:
            out[number].append((step, math.nan if value is None else value))
        return dict(out)

    def finish_trial(self, name: str, number: int, state: TrialState | str,
                     metrics: Metrics | None = None, reward: float | None = None,
                     feasible: bool | None = None, error: str | None = None, *,
                     worker: str | None = None) -> TrialRecord:
        """Finish a trial, once: COMPLETE and PRUNED need metrics; FAILED may have none.

        `worker`, when given, replaces the one set_trial_running stored: an executor with
        a pool (Ray) learns which of its workers ran the trial only from the outcome."""
        final = to_state(state)
        if not final.finished:
            raise StorageError(f"finish_trial needs a finished state "
                               f"({', '.join(_FINISHED)}), got {final.value!r}")
        if metrics is None and final is not TrialState.FAILED:
            raise StorageError(f"trial {number} of study {name!r} cannot be {final.value} "
                               f"without metrics")
        metrics_plain = None if metrics is None else plain_json(metrics.to_dict(), "the metrics")
        with self._scope(f"finish trial {number} of study {name!r}", write=True) as session:
            row = self._live_trial(session, name, number, "finish")
            row.state = final.value
            row.metrics = metrics_plain
            row.metric = None if metrics_plain is None else metrics_plain.get("metric")
            row.cost = None if metrics_plain is None else metrics_plain.get("cost")
            row.reward = finite_or_none(reward)
            row.feasible = None if feasible is None else bool(feasible)
            row.error = None if error is None else str(error)
            if worker is not None:
                row.worker = str(worker)[:MAX_NAME_LENGTH]
            row.finished_at = now()
            return trial_record(row)

    def mark_interrupted(self, name: str, numbers: Iterable[int]) -> list[int]:
        """Mark unfinished trials INTERRUPTED (the driver is stopping); finished ones are
        left alone. Returns the numbers marked. An unknown number changes nothing."""
        wanted = sorted({to_int(n, "trial number") for n in numbers})
        with self._scope(f"mark trials of study {name!r} interrupted", write=True) as session:
            study_id = self._study(session, name).id
            rows = {r.number: r for r in session.scalars(
                sa.select(TrialRow).where(TrialRow.study_id == study_id,
                                          TrialRow.number.in_(wanted)))}
            missing = [n for n in wanted if n not in rows]
            if missing:
                raise StorageError(f"study {name!r} has no trial(s) {missing}")
            marked = [n for n in wanted if rows[n].state in _UNFINISHED]
            for n in marked:
                rows[n].state = TrialState.INTERRUPTED.value
            return marked

    def requeue_interrupted(self, name: str) -> list[int]:
        """On resume: every RUNNING, PENDING or INTERRUPTED trial becomes PENDING again, to
        be re-run from scratch (worker, start time and reports cleared; attempts kept).
        Returns their numbers."""
        with self._scope(f"requeue the trials of study {name!r}", write=True) as session:
            study_id = self._study(session, name, lock=True).id
            rows = session.scalars(sa.select(TrialRow).where(
                TrialRow.study_id == study_id, TrialRow.state.in_(_UNFINISHED))
                .order_by(TrialRow.number)).all()
            if rows:
                session.execute(sa.delete(IntermediateRow).where(
                    IntermediateRow.trial_id.in_([r.id for r in rows])))
            for r in rows:
                r.state = TrialState.PENDING.value
                r.worker = None
                r.started_at = None
            return [r.number for r in rows]

    # -- artifacts ------------------------------------------------------------------------
    def add_artifact(self, name: str, number: int, kind: str, path: str) -> ArtifactRecord:
        """Record where a trial's file is; the same kind again replaces the path."""
        if not isinstance(kind, str) or not kind or len(kind) > 64:
            raise StorageError(f"an artifact kind must be a non-empty string of at most 64 "
                               f"characters, got {kind!r}")
        with self._scope(f"add a {kind} artifact to trial {number} of study {name!r}",
                         write=True) as session:
            trial = self._trial(session, self._study(session, name).id, name, number)
            row = session.scalar(sa.select(ArtifactRow).where(
                ArtifactRow.trial_id == trial.id, ArtifactRow.kind == kind))
            if row is None:
                row = ArtifactRow(trial_id=trial.id, kind=kind, path=str(path),
                                  created_at=now())
                session.add(row)
            else:
                row.path = str(path)
                row.created_at = now()
            return ArtifactRecord(trial.number, kind, row.path, row.created_at)

    def get_artifacts(self, name: str, number: int | None = None) -> list[ArtifactRecord]:
        """Artifacts of one trial, or of the whole study; ordered by trial number, kind."""
        with self._scope(f"read the artifacts of study {name!r}", write=False) as session:
            study_id = self._study(session, name).id
            query = (sa.select(TrialRow.number, ArtifactRow.kind, ArtifactRow.path,
                               ArtifactRow.created_at)
                     .join(TrialRow, TrialRow.id == ArtifactRow.trial_id)
                     .where(TrialRow.study_id == study_id))
            if number is not None:
                query = query.where(TrialRow.id == self._trial(session, study_id, name,
                                                               number).id)
            rows = session.execute(query.order_by(TrialRow.number, ArtifactRow.kind)).all()
            return [ArtifactRecord(*r) for r in rows]

    # -- lookups --------------------------------------------------------------------------
    def _study(self, session: Session, name: str, *, lock: bool = False) -> StudyRow:
        query = sa.select(StudyRow).where(StudyRow.name == name)
        if lock:  # FOR UPDATE on PostgreSQL; SQLite already holds the write lock
            query = query.with_for_update()
        row = session.scalar(query)
        if row is None:
            names = session.scalars(sa.select(StudyRow.name).order_by(StudyRow.name)).all()
            if names:
                shown = ", ".join(names[:20]) + (f" (and {len(names) - 20} more)"
                                                 if len(names) > 20 else "")
                known = f"known studies: {shown}"
            else:
                known = "it holds no studies yet (start one with `autopeft search`)"
            raise StudyNotFoundError(f"no study named {name!r} in {self.url}; {known}")
        return row

    @staticmethod
    def _trial(session: Session, study_id: int, name: str, number: int) -> TrialRow:
        row = session.scalar(sa.select(TrialRow).where(TrialRow.study_id == study_id,
                                                       TrialRow.number == number))
        if row is None:
            count = session.scalar(sa.select(sa.func.count(TrialRow.id))
                                   .where(TrialRow.study_id == study_id))
            have = f"its trials are 0..{count - 1}" if count else "it has no trials yet"
            raise StorageError(f"study {name!r} has no trial number {number!r}; {have}")
        return row

    def _live_trial(self, session: Session, name: str, number: int, verb: str) -> TrialRow:
        row = self._trial(session, self._study(session, name).id, name, number)
        if row.state in _FINISHED:
            raise StorageError(f"cannot {verb} trial {number} of study {name!r}: it is "
                               f"already {row.state}, and finished trials never change")
        return row

    @staticmethod
    def _summaries(session: Session, study_ids: list[int]
                   ) -> tuple[dict[int, dict[str, int]], dict[int, float]]:
        counts: dict[int, dict[str, int]] = {i: {s.value: 0 for s in TrialState}
                                             for i in study_ids}
        best: dict[int, float] = {}
        if not study_ids:
            return counts, best
        for study_id, state, n in session.execute(
                sa.select(TrialRow.study_id, TrialRow.state, sa.func.count(TrialRow.id))
                .where(TrialRow.study_id.in_(study_ids))
                .group_by(TrialRow.study_id, TrialRow.state)):
            counts[study_id][state] = n
        # the SQL form of autopeft.ranking.best (tests/test_ranking.py checks they agree):
        # the highest reward of the COMPLETE trials that are not infeasible
        eligible = ((TrialRow.state == TrialState.COMPLETE.value) & TrialRow.reward.is_not(None)
                    & sa.or_(TrialRow.feasible.is_(None), TrialRow.feasible.is_(True)))
        for study_id, value in session.execute(
                sa.select(TrialRow.study_id, sa.func.max(TrialRow.reward))
                .where(TrialRow.study_id.in_(study_ids), eligible)
                .group_by(TrialRow.study_id)):
            if value is not None:
                best[study_id] = value
        return counts, best
