"""The tables (SQLAlchemy 2.x declarative models).

Every table name starts with ``autopeft_`` and Alembic's version table is
``autopeft_alembic_version``, so one database can also hold other tools' tables (Optuna's
are called ``studies`` and ``trials``). Constraint names follow one naming convention so
that SQLite and PostgreSQL get the same names and migrations can refer to them.

Times are epoch seconds (double precision). JSON columns use sa.JSON (TEXT on SQLite,
json on PostgreSQL) and hold only plain JSON: non-finite floats are stored as null.
Any change here needs a new migration in migrations/versions/ (the schema test fails
until the migration matches these models).
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONDict = dict[str, Any]


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class StudyRow(Base):
    """One search: what it searches, with what, and with which software."""

    __tablename__ = "autopeft_studies"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    space_text: Mapped[str] = mapped_column(sa.Text, nullable=False)
    space_fingerprint: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    space_source: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    experiment: Mapped[JSONDict] = mapped_column(sa.JSON, nullable=False)
    controller: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    controller_settings: Mapped[JSONDict] = mapped_column(sa.JSON, nullable=False)
    seed: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    n_trials: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    autopeft_version: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    versions: Mapped[JSONDict] = mapped_column(sa.JSON, nullable=False)
    created_at: Mapped[float] = mapped_column(sa.Double, nullable=False)
    updated_at: Mapped[float] = mapped_column(sa.Double, nullable=False)


class TrialRow(Base):
    """One candidate evaluation. `number` is dense per study: 0, 1, 2, ..."""

    __tablename__ = "autopeft_trials"
    __table_args__ = (
        sa.UniqueConstraint("study_id", "number"),
        sa.Index(None, "study_id", "state"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("autopeft_studies.id", ondelete="CASCADE"), nullable=False)
    number: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    assignment: Mapped[JSONDict] = mapped_column(sa.JSON, nullable=False)
    candidate: Mapped[JSONDict] = mapped_column(sa.JSON, nullable=False)
    warm_start_from: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    meta: Mapped[JSONDict] = mapped_column(sa.JSON, nullable=False)
    # Metrics.to_dict(); `metric` and `cost` repeat two of its parts as their own columns
    # so that plain SQL can rank and filter trials. All three are written together, once.
    metrics: Mapped[JSONDict | None] = mapped_column(sa.JSON(none_as_null=True), nullable=True)
    metric: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    cost: Mapped[JSONDict | None] = mapped_column(sa.JSON(none_as_null=True), nullable=True)
    reward: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    feasible: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    worker: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    created_at: Mapped[float] = mapped_column(sa.Double, nullable=False)
    started_at: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(sa.Double, nullable=True)


class IntermediateRow(Base):
    """A validation metric reported during training (what pruners look at)."""

    __tablename__ = "autopeft_trial_intermediates"
    __table_args__ = (sa.UniqueConstraint("trial_id", "step"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("autopeft_trials.id", ondelete="CASCADE"), nullable=False)
    step: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    value: Mapped[float | None] = mapped_column(sa.Double, nullable=True)  # null: NaN/inf


class ControllerStateRow(Base):
    """The latest Controller.state_dict() of a study (stateful controllers: LSTM, PBT)."""

    __tablename__ = "autopeft_controller_states"

    study_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("autopeft_studies.id", ondelete="CASCADE"),
        primary_key=True)
    state: Mapped[JSONDict] = mapped_column(sa.JSON, nullable=False)
    updated_at: Mapped[float] = mapped_column(sa.Double, nullable=False)


class ArtifactRow(Base):
    """A file that belongs to a trial, e.g. kind "checkpoint": its adapter weights."""

    __tablename__ = "autopeft_artifacts"
    __table_args__ = (sa.UniqueConstraint("trial_id", "kind"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("autopeft_trials.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    path: Mapped[str] = mapped_column(sa.Text, nullable=False)
    created_at: Mapped[float] = mapped_column(sa.Double, nullable=False)


class StudyAttrRow(Base):
    """Free-form JSON per study and key (runs directory, finalize results...)."""

    __tablename__ = "autopeft_study_attrs"

    study_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("autopeft_studies.id", ondelete="CASCADE"),
        primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    value: Mapped[Any] = mapped_column(sa.JSON(none_as_null=False), nullable=True)
