"""Hook points for what Label Studio's webhooks tell us and for prompt versions typed, accepted or activated;
the agent subscribes by appending callbacks.

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
PromptVersionChanged = Callable[[str, int, str], None]  # (project id, version id, "typed" | "accepted" | ...)

on_annotation_saved: list[AnnotationSaved] = []
on_annotations_deleted: list[AnnotationsDeleted] = []
on_engine_ready: list[Callable[[], None]] = []  # the loader thread calls these once the model is ready
on_prompt_version: list[PromptVersionChanged] = []  # a version typed, accepted or activated (live evaluation)


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


def emit_prompt_version(project_id: str, version_id: int, trigger: str) -> None:
    """A prompt version was typed at /predict, accepted or activated: callbacks only queue work, so the
    request that made it never waits."""
    for callback in list(on_prompt_version):
        try:
            callback(project_id, version_id, trigger)
        except Exception:
            log.exception("on_prompt_version callback %r failed", callback)
