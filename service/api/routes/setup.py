"""POST /setup: Label Studio connects a project; answer its model version fast (timeout 3 s)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api import project_links
from service.api.deps import SessionDep
from service.api.protocol import SetupRequest, SetupResponse
from service.labeling import parse_config
from service.projects import ensure_prompt, project_key
from service.runtime import host
from service.settings import settings
from service.store import repo
from service.versions import model_version

router = APIRouter(tags=["label-studio"])


@router.post("/setup")
def setup(body: SetupRequest, session: SessionDep) -> SetupResponse:
    """Parse the labeling config (422 if unusable), store the project, name the current model version."""
    schema = parse_config(body.label_config, settings.prompt_prefix, settings.response_name)
    project_id = project_key(body.project, body.label_config)
    known = repo.get_project(session, project_id)
    changed = known is None or known.label_config != body.label_config
    repo.upsert_project(session, project_id, body.label_config)
    version = ensure_prompt(session, project_id, schema)
    project_links.remember(project_id, hostname=body.hostname)  # the token is used once for the title, never kept
    project_links.fetch_title_soon(project_id, body.hostname, body.access_token)
    if changed:  # Label Studio calls /setup again and again: warm a new project or a new config only
        host.warm_soon(project_id)  # the first /predict then pays no compile or cold prefix cost
    return SetupResponse(model_version=model_version(version.id, host.model_id()))
