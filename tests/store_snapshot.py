"""Every row of every table in the store, to show that a refused request changed nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session, SQLModel

import service.store.models  # noqa: F401  (every table on the store's metadata)
from service.store import db


def snapshot(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    with Session(db.sql_engine(db_url)) as session:
        return {
            table.name: sorted((tuple(row) for row in session.execute(select(table))), key=repr)
            for table in SQLModel.metadata.sorted_tables
        }
