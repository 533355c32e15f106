"""POST /webhook: every Label Studio project event; answered fast (timeout 1 s), hooks run afterwards."""

from __future__ import annotations

import logging

from fastapi import APIRouter, BackgroundTasks, HTTPException, status

from agent import hooks
from service.api import project_links
from service.api.deps import SessionDep
from service.api.protocol import WebhookEvent, WebhookResponse
from service.api.webhook_payloads import WebhookError, annotation_from_event, deleted_ids, event_project_id
from service.labeling import ConfigError, ProjectSchema, parse_config
from service.projects import version_shown_as
from service.runtime import events
from service.settings import settings
from service.store import repo
from service.store.models import AnnotationPublic
from service.store.tasks import remember_tasks

log = logging.getLogger(__name__)

router = APIRouter(tags=["label-studio"])

SAVED = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}
DELETED = "ANNOTATIONS_DELETED"
TRAIN = "START_TRAINING"


def _schema(label_config: str) -> ProjectSchema | None:
    try:
        return parse_config(label_config, settings.prompt_prefix, settings.response_name)
    except ConfigError:
        return None


@router.post("/webhook")
def webhook(event: WebhookEvent, session: SessionDep, background: BackgroundTasks) -> WebhookResponse:
    """Store created/updated annotations, forget deleted ones, acknowledge everything else as ignored."""
    try:
        return _handle(event, session, background)
    finally:
        # The connection goes back to the pool now: the session's own clean-up waits for the background work,
        # which waits for a free thread; with every thread waiting for a connection, nothing would move.
        session.close()


def _handle(event: WebhookEvent, session: SessionDep, background: BackgroundTasks) -> WebhookResponse:
    if event.action == DELETED:
        ids = deleted_ids(event)
        deleted = repo.delete_annotations(session, ids)
        background.add_task(events.emit_annotations_deleted, event_project_id(event), ids)
        return WebhookResponse(status="ok", action=event.action, deleted=deleted)
    if event.action == TRAIN and (project_id := event_project_id(event)) is not None:
        background.add_task(hooks.start_training, project_id)
        return WebhookResponse(status="ok", action=event.action)
    if event.action not in SAVED:
        return WebhookResponse(status="ignored", action=event.action)

    project_id = event_project_id(event)
    if project_id is not None and isinstance(event.project, dict):
        project_links.remember(project_id, title=event.project.get("title"))
    if project_id is None:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{event.action} names no project"
        )
    label_config = (event.project or {}).get("label_config")
    project = repo.upsert_project(session, project_id, label_config if isinstance(label_config, str) else None)
    schema = _schema(project.label_config) if project.label_config else None
    try:
        annotation = annotation_from_event(event, project_id, schema, settings.prompt_prefix)
    except WebhookError as exc:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None

    stored = repo.upsert_annotation(session, annotation)
    if event.task:  # the annotation carries no task text: keep it so the agent can re-score the task
        remember_tasks(session, project_id, [event.task])
    shown = schema is not None and annotation.prompt_text is not None
    if shown and version_shown_as(session, project_id, schema, annotation.prompt_text) is not None:
        pass  # the Prompt box as Prompter filled it from a version: nothing new was typed
    elif annotation.prompt_text:
        author = str(annotation.completed_by) if annotation.completed_by is not None else None
        repo.record_prompt(session, project_id, annotation.prompt_text, "annotator", author=author)
    background.add_task(events.emit_annotation_saved, AnnotationPublic.model_validate(stored))
    return WebhookResponse(status="ok", action=event.action, annotation_id=stored.id)
