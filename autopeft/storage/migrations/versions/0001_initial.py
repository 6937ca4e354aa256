"""initial schema

Studies, trials, intermediate reports, controller state, artifacts and study attributes.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autopeft_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("space_text", sa.Text(), nullable=False),
        sa.Column("space_fingerprint", sa.String(128), nullable=False),
        sa.Column("space_source", sa.Text(), nullable=True),
        sa.Column("experiment", sa.JSON(), nullable=False),
        sa.Column("controller", sa.String(255), nullable=False),
        sa.Column("controller_settings", sa.JSON(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=True),
        sa.Column("autopeft_version", sa.String(64), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_autopeft_studies"),
        sa.UniqueConstraint("name", name="uq_autopeft_studies_name"),
    )
    op.create_table(
        "autopeft_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("assignment", sa.JSON(), nullable=False),
        sa.Column("candidate", sa.JSON(), nullable=False),
        sa.Column("warm_start_from", sa.Integer(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("metric", sa.Double(), nullable=True),
        sa.Column("cost", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("reward", sa.Double(), nullable=True),
        sa.Column("feasible", sa.Boolean(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_autopeft_trials"),
        sa.ForeignKeyConstraint(["study_id"], ["autopeft_studies.id"], ondelete="CASCADE",
                                name="fk_autopeft_trials_study_id_autopeft_studies"),
        sa.UniqueConstraint("study_id", "number", name="uq_autopeft_trials_study_id_number"),
    )
    op.create_index("ix_autopeft_trials_study_id_state", "autopeft_trials",
                    ["study_id", "state"])
    op.create_table(
        "autopeft_trial_intermediates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_autopeft_trial_intermediates"),
        sa.ForeignKeyConstraint(["trial_id"], ["autopeft_trials.id"], ondelete="CASCADE",
                                name="fk_autopeft_trial_intermediates_trial_id_autopeft_trials"),
        sa.UniqueConstraint("trial_id", "step",
                            name="uq_autopeft_trial_intermediates_trial_id_step"),
    )
    op.create_table(
        "autopeft_controller_states",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("study_id", name="pk_autopeft_controller_states"),
        sa.ForeignKeyConstraint(["study_id"], ["autopeft_studies.id"], ondelete="CASCADE",
                                name="fk_autopeft_controller_states_study_id_autopeft_studies"),
    )
    op.create_table(
        "autopeft_artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_autopeft_artifacts"),
        sa.ForeignKeyConstraint(["trial_id"], ["autopeft_trials.id"], ondelete="CASCADE",
                                name="fk_autopeft_artifacts_trial_id_autopeft_trials"),
        sa.UniqueConstraint("trial_id", "kind", name="uq_autopeft_artifacts_trial_id_kind"),
    )
    op.create_table(
        "autopeft_study_attrs",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("study_id", "key", name="pk_autopeft_study_attrs"),
        sa.ForeignKeyConstraint(["study_id"], ["autopeft_studies.id"], ondelete="CASCADE",
                                name="fk_autopeft_study_attrs_study_id_autopeft_studies"),
    )


def downgrade() -> None:
    op.drop_table("autopeft_study_attrs")
    op.drop_table("autopeft_artifacts")
    op.drop_table("autopeft_controller_states")
    op.drop_table("autopeft_trial_intermediates")
    op.drop_index("ix_autopeft_trials_study_id_state", table_name="autopeft_trials")
    op.drop_table("autopeft_trials")
    op.drop_table("autopeft_studies")
