"""Live evaluations: what started an evaluation, whether it failed and why, and its comparison with the version
active then on the same tasks (fixes, breaks, the one-sided McNemar p-value); the figures of a failed one are null.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIGURES = ("accuracy", "macro_f1", "micro_f1", "ece")


def upgrade() -> None:
    with op.batch_alter_table("evaluation") as batch:
        for name in FIGURES:
            batch.alter_column(name, existing_type=sa.Float(), nullable=True)
        batch.add_column(sa.Column("trigger", sa.String(length=32), nullable=False, server_default="cli"))
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="ok"))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("tasks_key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("compared_with_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("compared_accuracy", sa.Float(), nullable=True))
        batch.add_column(sa.Column("fixes", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("breaks", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("p_value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("significant", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("outcomes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("seconds", sa.Float(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_evaluation_compared_with_id_prompt_version"), "prompt_version", ["compared_with_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("evaluation") as batch:
        batch.drop_constraint(op.f("fk_evaluation_compared_with_id_prompt_version"), type_="foreignkey")
        for name in ("seconds", "outcomes", "significant", "p_value", "breaks", "fixes", "compared_accuracy"):
            batch.drop_column(name)
        for name in ("compared_with_id", "tasks_key", "reason", "status", "trigger"):
            batch.drop_column(name)
    op.execute("DELETE FROM evaluation WHERE accuracy IS NULL")  # failed live evaluations have no figures
    with op.batch_alter_table("evaluation") as batch:
        for name in FIGURES:
            batch.alter_column(name, existing_type=sa.Float(), nullable=False)
