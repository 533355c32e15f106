"""GET /projects/{id} and /projects/{id}/prompts: what the store knows about a project."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from service.api.deps import SessionDep
from service.store import repo
from service.store.models import ProjectPublic, PromptVersionPublic

router = APIRouter(prefix="/projects", tags=["projects"])


def _require(session: SessionDep, project_id: str) -> None:
    if repo.get_project(session, project_id) is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no project {project_id}")


@router.get("/{project_id}")
def read_project(session: SessionDep, project_id: str) -> ProjectPublic:
    _require(session, project_id)
    return ProjectPublic.model_validate(repo.get_project(session, project_id))


@router.get("/{project_id}/prompts")
def read_prompts(session: SessionDep, project_id: str) -> list[PromptVersionPublic]:
    """Every prompt version of the project, oldest first; exactly one has ``is_active``."""
    _require(session, project_id)
    return [PromptVersionPublic.model_validate(v) for v in repo.list_prompt_versions(session, project_id)]
