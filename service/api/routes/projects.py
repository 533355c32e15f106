"""GET /projects and /projects/{id}: what the store knows about the projects. Prompts: routes/prompts.py."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlmodel import Session

from service.api.deps import SessionDep
from service.store import repo
from service.store.models import Project, ProjectPublic

router = APIRouter(prefix="/projects", tags=["projects"])


def require_project(session: Session, project_id: str) -> Project:
    """The project, or 404 with its id."""
    project = repo.get_project(session, project_id)
    if project is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no project {project_id}")
    return project


@router.get("")
def read_projects(session: SessionDep) -> list[ProjectPublic]:
    """Every project the store knows, by id."""
    return [ProjectPublic.model_validate(p) for p in repo.list_projects(session)]


@router.get("/{project_id}")
def read_project(session: SessionDep, project_id: str) -> ProjectPublic:
    return ProjectPublic.model_validate(require_project(session, project_id))
