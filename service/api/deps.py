"""Typed dependencies the routes take as parameters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlmodel import Session

from service.store.db import sql_engine


def get_session() -> Iterator[Session]:
    with Session(sql_engine()) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
