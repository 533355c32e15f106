"""Refinements: start one on demand (it runs in the background), list a project's runs with status and error."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel

from agent import hooks, loop
from service.api.deps import SessionDep
from service.api.reviewers import ReviewerDep
from service.api.routes.projects import require_project

router = APIRouter(prefix="/projects/{project_id}", tags=["refinements"])


class RefinementRunPublic(BaseModel):
    """One refinement: ``running`` until ``done`` (``summary`` lists every candidate tried and the proposal
    made, if any) or ``failed`` (``error`` says why)."""

    id: int
    project_id: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    summary: dict[str, Any] | None


@router.post("/refine", status_code=status.HTTP_202_ACCEPTED)
def refine(session: SessionDep, project_id: str, _: ReviewerDep) -> RefinementRunPublic:
    """Start a refinement now; answers at once with the ``running`` run to poll at ``/refinements``.
    409 with the reason when the project has nothing to learn from or a refinement is already running."""
    require_project(session, project_id)
    run = hooks.refine_now(session, project_id)  # NoAnnotations, RefinementBusy: 409 with the reason
    return RefinementRunPublic.model_validate(run, from_attributes=True)


@router.get("/refinements")
def list_refinements(session: SessionDep, project_id: str) -> list[RefinementRunPublic]:
    """The project's refinements, newest first."""
    require_project(session, project_id)
    return [RefinementRunPublic.model_validate(r, from_attributes=True) for r in loop.list_runs(session, project_id)]
