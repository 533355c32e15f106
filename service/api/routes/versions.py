"""GET /versions: model versions known for a project (or for all), newest first."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import SessionDep
from service.api.protocol import VersionsResponse
from service.projects import project_key
from service.runtime import host
from service.store import repo
from service.versions import model_version

router = APIRouter(tags=["label-studio"])


@router.get("/versions")
def versions(session: SessionDep, project: str | None = None) -> VersionsResponse:
    """The current version (active prompt with the model) first, then those with stored predictions."""
    project_id = project_key(project, None) if project else None
    found: list[str] = []
    if project_id is not None and (active := repo.active_prompt(session, project_id)) is not None:
        found.append(model_version(active.id, host.model_id()))
    found += [v for v in repo.list_model_versions(session, project_id) if v not in found]
    return VersionsResponse(versions=found)
