"""GET /projects/{id}/activity: what the review page shows at the top and polls — the Label Studio project,
annotations and disagreements received, the refinement trigger, and the running refinement's progress."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlmodel import col, func, select

from agent.corrections import new_disagreements
from agent.loop import list_runs
from service.api import project_links
from service.api.deps import SessionDep
from service.api.routes.projects import require_project
from service.settings import settings
from service.store.models import RUNNING, Annotation, Correction

router = APIRouter(prefix="/projects/{project_id}", tags=["refinements"])


class RunningRefinement(BaseModel):
    id: int
    trigger: str
    started_at: datetime
    progress: dict[str, Any] | None  # {"strategy", "scored", "total", "folds"} as the run goes


class ProjectActivity(BaseModel):
    """``disagreements_since_refinement`` counts toward ``disagreements_trigger``: a refinement starts when it
    reaches it. ``task_url`` has ``{task_id}`` to fill in; both Label Studio addresses are None until Label
    Studio has called ``/setup`` on this process."""

    project_id: str
    title: str | None
    label_studio_url: str | None
    task_url: str | None
    annotations: int
    annotated_tasks: int
    corrections: int
    annotations_compared: int  # annotations the agent has compared with a prediction (the rest are queued)
    disagreements: int
    disagreements_since_refinement: int
    disagreements_trigger: int
    agent_enabled: bool
    running: RunningRefinement | None


@router.get("/activity")
def read_activity(session: SessionDep, project_id: str) -> ProjectActivity:
    require_project(session, project_id)
    annotations, tasks = session.exec(
        select(func.count(), func.count(func.distinct(Annotation.task_id))).where(Annotation.project_id == project_id)
    ).one()
    corrections, compared, disagreements = session.exec(
        select(
            func.count(),
            func.count(func.distinct(Correction.annotation_id)),
            func.count().filter(col(Correction.agree).is_(False)),
        ).where(Correction.project_id == project_id)
    ).one()
    runs = list_runs(session, project_id)
    last = runs[0] if runs else None
    running = next((r for r in runs if r.status == RUNNING), None)
    link = project_links.get(project_id)
    return ProjectActivity(
        project_id=project_id,
        title=link.title,
        label_studio_url=link.url(project_id),
        task_url=link.task_url(project_id),
        annotations=annotations,
        annotated_tasks=tasks,
        corrections=corrections,
        annotations_compared=compared,
        disagreements=disagreements,
        disagreements_since_refinement=new_disagreements(session, project_id, last.corrections_seen if last else 0),
        disagreements_trigger=settings.agent.disagreements_trigger,
        agent_enabled=settings.agent.enabled,
        running=RunningRefinement(
            id=running.id,
            trigger=running.trigger,
            started_at=running.started_at,
            progress=(running.summary or {}).get("progress"),
        )
        if running is not None
        else None,
    )
