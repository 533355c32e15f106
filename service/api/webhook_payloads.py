"""Reading Label Studio's webhook payloads into what the store keeps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from constraints.errors import BadInput
from service.api.protocol import WebhookEvent
from service.labeling import ProjectSchema
from service.projects import textarea_text
from service.store.models import AnnotationCreate, as_task_id


class WebhookError(BadInput):
    """A webhook payload missing what its action needs; the message says what."""


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def parse_ls_datetime(value: Any) -> datetime | None:
    """Label Studio's ISO 8601 timestamps ("2025-01-02T03:04:05.123456Z"); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def event_project_id(event: WebhookEvent) -> str | None:
    """The project's id from ``project.id``, else from the annotation or the task."""
    for source in (event.project, event.annotation, event.task):
        if not source:
            continue
        found = as_task_id(source.get("id")) if source is event.project else as_task_id(source.get("project"))
        if found is not None:
            return str(found)
    return None


def is_prompt_item(item: dict[str, Any], schema: ProjectSchema | None, prompt_prefix: str) -> bool:
    name = str(item.get("from_name", ""))
    if schema is not None:
        return schema.prompt is not None and name == schema.prompt.name
    return item.get("type") == "textarea" and name.lower().startswith(prompt_prefix.lower())


def annotation_from_event(
    event: WebhookEvent, project_id: str, schema: ProjectSchema | None, prompt_prefix: str
) -> AnnotationCreate:
    """The annotation of an ANNOTATION_CREATED / ANNOTATION_UPDATED event; WebhookError if incomplete."""
    annotation = event.annotation
    if not annotation:
        raise WebhookError(f"{event.action} has no 'annotation' object")
    annotation_id = as_task_id(annotation.get("id"))
    if annotation_id is None:
        raise WebhookError(f"{event.action}: the annotation has no integer 'id'")
    task_id = as_task_id(annotation.get("task"))
    if task_id is None and event.task:
        task_id = as_task_id(event.task.get("id"))
    if task_id is None:
        raise WebhookError(f"{event.action}: annotation {annotation_id} names no task")
    result = annotation.get("result")
    result = [item for item in result if isinstance(item, dict)] if isinstance(result, list) else []

    choices: dict[str, list[str]] = {}
    prompt_text = None
    for item in result:
        value = item.get("value")
        if item.get("type") == "choices" and isinstance(value, dict):
            picked = value.get("choices")
            picked = [picked] if isinstance(picked, str) else picked
            if isinstance(picked, list):
                choices.setdefault(str(item.get("from_name", "")), []).extend(str(c) for c in picked)
        elif prompt_text is None and is_prompt_item(item, schema, prompt_prefix):
            prompt_text = textarea_text(value)

    return AnnotationCreate(
        id=annotation_id,
        project_id=project_id,
        task_id=task_id,
        choices=choices,
        prompt_text=prompt_text,
        completed_by=as_task_id(annotation.get("completed_by")),
        result=result,
        lead_time=_float(annotation.get("lead_time")),
        ls_created_at=parse_ls_datetime(annotation.get("created_at")),
        ls_updated_at=parse_ls_datetime(annotation.get("updated_at")),
    )


def deleted_ids(event: WebhookEvent) -> list[int]:
    """Annotation ids of an ANNOTATIONS_DELETED event."""
    ids = (as_task_id(item) for item in event.annotations or [])
    return [i for i in ids if i is not None]
