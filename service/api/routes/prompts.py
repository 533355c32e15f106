"""A project's prompt versions: history with metrics and lineage, diff between two, activation (rollback), and the
evaluations `prompter eval` stored for each."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel
from sqlmodel import Session

from agent import review
from service.api.deps import SessionDep
from service.api.reviewers import ReviewerDep
from service.api.routes.projects import require_project
from service.runtime import events, host
from service.store import repo
from service.store.models import EvaluationHeadline, EvaluationPublic, PromptVersion, PromptVersionPublic
from service.versions import model_version

router = APIRouter(prefix="/projects/{project_id}/prompts", tags=["prompts"])


class PromptVersionHistory(PromptVersionPublic):
    """A version as the history shows it: with the model version Label Studio sees while it is active, and the
    headline figures and comparison of its latest evaluation, live or `prompter eval` (None if never evaluated)."""

    model_version: str
    evaluation: EvaluationHeadline | None = None


class ActivePrompt(BaseModel):
    """The project's active version after a change, and the model version /predict now reports."""

    version: PromptVersionPublic
    model_version: str


class PromptDiff(BaseModel):
    from_id: int
    to_id: int
    diff: str  # unified diff of the prompt text
    pool: dict[str, Any] | None = None  # the demonstration pool's change (review.pool_change); None: no pool


def active_prompt(version: PromptVersion) -> ActivePrompt:
    return ActivePrompt(
        version=PromptVersionPublic.model_validate(version), model_version=model_version(version.id, host.model_id())
    )


def version_of(session: Session, project_id: str, version_id: int) -> PromptVersion:
    """404 when there is no such version; 409 when it belongs to another project."""
    version = session.get(PromptVersion, version_id)
    if version is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no prompt version {version_id}")
    if version.project_id != project_id:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"prompt version {version_id} belongs to project {version.project_id}, not {project_id}",
        )
    return version


@router.get("")
def read_prompts(session: SessionDep, project_id: str) -> list[PromptVersionHistory]:
    """Every prompt version of the project, oldest first, with lineage (``parent_id``, ``source``, ``author``)
    and the metrics it was accepted on; exactly one has ``is_active``."""
    require_project(session, project_id)
    model_id = host.model_id()
    latest = repo.latest_evaluations(session, project_id)
    return [
        PromptVersionHistory.model_validate(
            {**v.model_dump(), "model_version": model_version(v.id, model_id), "evaluation": latest.get(v.id)}
        )
        for v in review.prompt_history(session, project_id)
    ]


@router.get("/diff")
def diff_prompts(
    session: SessionDep,
    project_id: str,
    to_id: Annotated[int, Query(alias="to", description="The newer version.")],
    from_id: Annotated[int | None, Query(alias="from", description="The older version; default: to's parent.")] = None,
) -> PromptDiff:
    """Unified diff between two versions of the project's text, and the demonstration pool's change."""
    require_project(session, project_id)
    to = version_of(session, project_id, to_id)
    if from_id is None:
        if to.parent_id is None:
            raise HTTPException(
                status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"prompt version {to_id} has no parent: say which version to compare it with (?from=)",
            )
        from_id = to.parent_id
    version_of(session, project_id, from_id)
    diff, pool = review.version_change(session, from_id, to_id)
    return PromptDiff(from_id=from_id, to_id=to_id, diff=diff, pool=pool)


@router.post("/{version_id}/activate")
def activate_prompt(session: SessionDep, project_id: str, version_id: int, _: ReviewerDep) -> ActivePrompt:
    """Make a version of the project its active prompt again (rollback); the next /predict uses it."""
    require_project(session, project_id)
    version_of(session, project_id, version_id)
    version = review.rollback(session, project_id, version_id)  # NotFound (404) if deleted in between
    host.warm_soon(project_id)
    events.emit_prompt_version(project_id, version.id, "activated")
    return active_prompt(version)


@router.get("/{version_id}/evaluations")
def read_evaluations(session: SessionDep, project_id: str, version_id: int) -> list[EvaluationPublic]:
    """The version's evaluations, newest first: `prompter eval`'s (``trigger`` "cli") and the live ones on the
    project's annotated tasks (``agent.live_eval``): headline figures, per-label scores, confusion matrix (single
    choice), reliability bins, the accuracy-vs-coverage curve, and for a live one its comparison with the version
    active then on the same tasks (``compared_with_id``, ``compared_accuracy``, ``fixes``, ``breaks``,
    ``p_value``, ``significant``); a failed one has ``status`` "failed" and its ``reason``."""
    require_project(session, project_id)
    version_of(session, project_id, version_id)
    return [EvaluationPublic.model_validate(e) for e in repo.list_evaluations(session, version_id)]
