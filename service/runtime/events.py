"""Hook points for what Label Studio's webhooks tell us; the agent subscribes by appending callbacks.

Callbacks run after the webhook's response is sent (as background work), one after another; an exception
in one is logged and does not stop the others. They open their own database session if they need one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from service.store.models import AnnotationPublic

log = logging.getLogger(__name__)

AnnotationSaved = Callable[[AnnotationPublic], None]
AnnotationsDeleted = Callable[[str | None, list[int]], None]  # (project id if known, annotation ids)

on_annotation_saved: list[AnnotationSaved] = []
on_annotations_deleted: list[AnnotationsDeleted] = []
on_engine_ready: list[Callable[[], None]] = []  # the loader thread calls these once the model is ready


def emit_annotation_saved(annotation: AnnotationPublic) -> None:
    for callback in list(on_annotation_saved):
        try:
            callback(annotation)
        except Exception:
            log.exception("on_annotation_saved callback %r failed", callback)


def emit_annotations_deleted(project_id: str | None, ids: list[int]) -> None:
    for callback in list(on_annotations_deleted):
        try:
            callback(project_id, ids)
        except Exception:
            log.exception("on_annotations_deleted callback %r failed", callback)


def emit_engine_ready() -> None:
    for callback in list(on_engine_ready):
        try:
            callback()
        except Exception:
            log.exception("on_engine_ready callback %r failed", callback)
