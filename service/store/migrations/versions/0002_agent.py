"""The agent: task data, corrections, refinement runs, proposals; prompt_version.examples.

One running refinement per project is a unique partial index (SQLite >= 3.8 and PostgreSQL both have them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'running'")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("prompt_version") as batch:
        batch.add_column(sa.Column("examples", sa.JSON(), nullable=True))

    op.create_table(
        "task_data",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("project_id", "task_id", name=op.f("pk_task_data")),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], name=op.f("fk_task_data_project_id_project")),
    )

    op.create_table(
        "correction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("annotation_id", sa.Integer(), nullable=False),
        sa.Column("control", sa.String(length=255), nullable=False),
        sa.Column("gold", sa.JSON(), nullable=False),
        sa.Column("predicted", sa.JSON(), nullable=False),
        sa.Column("prompt_version_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=255), nullable=False),
        sa.Column("agree", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_correction")),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], name=op.f("fk_correction_project_id_project")),
        sa.ForeignKeyConstraint(
            ["prompt_version_id"], ["prompt_version.id"], name=op.f("fk_correction_prompt_version_id_prompt_version")
        ),
        sa.UniqueConstraint("annotation_id", "control", name="uq_correction_annotation_control"),
    )
    op.create_index(op.f("ix_correction_project_id"), "correction", ["project_id"])
    op.create_index(op.f("ix_correction_task_id"), "correction", ["task_id"])

    op.create_table(
        "refinement_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        _ts("lease_until"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("corrections_seen", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refinement_run")),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], name=op.f("fk_refinement_run_project_id_project")),
    )
    op.create_index(op.f("ix_refinement_run_project_id"), "refinement_run", ["project_id"])
    op.create_index(
        "uq_refinement_run_one_running",
        "refinement_run",
        ["project_id"],
        unique=True,
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )

    op.create_table(
        "proposal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("base_version_id", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("examples", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        _ts("created_at"),
        _ts("decided_at", nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("result_version_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposal")),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], name=op.f("fk_proposal_project_id_project")),
        sa.ForeignKeyConstraint(["run_id"], ["refinement_run.id"], name=op.f("fk_proposal_run_id_refinement_run")),
        sa.ForeignKeyConstraint(
            ["base_version_id"], ["prompt_version.id"], name=op.f("fk_proposal_base_version_id_prompt_version")
        ),
        sa.ForeignKeyConstraint(
            ["result_version_id"], ["prompt_version.id"], name=op.f("fk_proposal_result_version_id_prompt_version")
        ),
    )
    op.create_index(op.f("ix_proposal_project_id"), "proposal", ["project_id"])
    op.create_index(op.f("ix_proposal_status"), "proposal", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_proposal_status"), table_name="proposal")
    op.drop_index(op.f("ix_proposal_project_id"), table_name="proposal")
    op.drop_table("proposal")
    op.drop_index("uq_refinement_run_one_running", table_name="refinement_run")
    op.drop_index(op.f("ix_refinement_run_project_id"), table_name="refinement_run")
    op.drop_table("refinement_run")
    op.drop_index(op.f("ix_correction_task_id"), table_name="correction")
    op.drop_index(op.f("ix_correction_project_id"), table_name="correction")
    op.drop_table("correction")
    op.drop_table("task_data")
    with op.batch_alter_table("prompt_version") as batch:
        batch.drop_column("examples")
