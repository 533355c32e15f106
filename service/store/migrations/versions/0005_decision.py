"""How a prompt version decides: the fused decision's weights on prompt versions and proposals.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("prompt_version", "proposal"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("decision", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("proposal", "prompt_version"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("decision")
