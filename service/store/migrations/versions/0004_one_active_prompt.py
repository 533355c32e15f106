"""At most one active prompt version per project, as a unique partial index.

Before the index, a project with several active versions (possible before the project lock of replicas)
keeps only its newest one active.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("is_active")


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE prompt_version SET is_active = :off WHERE is_active AND id <> ("
            " SELECT MAX(newer.id) FROM prompt_version AS newer"
            " WHERE newer.project_id = prompt_version.project_id AND newer.is_active)"
        ).bindparams(off=False)
    )
    op.create_index(
        "uq_prompt_version_one_active",
        "prompt_version",
        ["project_id"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_prompt_version_one_active", table_name="prompt_version")
