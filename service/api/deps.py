"""Typed dependencies the routes take as parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from constraints.base import Engine
from service import runtime
from service.store.db import SessionDep

EngineDep = Annotated[Engine, Depends(runtime.get_engine)]

__all__ = ["EngineDep", "SessionDep"]
