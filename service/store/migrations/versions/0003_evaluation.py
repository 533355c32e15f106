"""Evaluations: one row per prompt version scored by a `prompter eval` run, with its metrics and curves.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evaluation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("prompt_version_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=255), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("control", sa.String(length=255), nullable=False),
        sa.Column("tasks", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.Column("macro_f1", sa.Float(), nullable=False),
        sa.Column("micro_f1", sa.Float(), nullable=False),
        sa.Column("ece", sa.Float(), nullable=False),
        sa.Column("target_accuracy", sa.Float(), nullable=True),
        sa.Column("threshold", sa.JSON(), nullable=True),
        sa.Column("per_label", sa.JSON(), nullable=False),
        sa.Column("confusion", sa.JSON(), nullable=True),
        sa.Column("reliability", sa.JSON(), nullable=False),
        sa.Column("coverage", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation")),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], name=op.f("fk_evaluation_project_id_project")),
        sa.ForeignKeyConstraint(
            ["prompt_version_id"],
            ["prompt_version.id"],
            name=op.f("fk_evaluation_prompt_version_id_prompt_version"),
        ),
    )
    op.create_index(op.f("ix_evaluation_project_id"), "evaluation", ["project_id"])
    op.create_index(op.f("ix_evaluation_prompt_version_id"), "evaluation", ["prompt_version_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_evaluation_prompt_version_id"), table_name="evaluation")
    op.drop_index(op.f("ix_evaluation_project_id"), table_name="evaluation")
    op.drop_table("evaluation")
