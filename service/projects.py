"""Projects as Label Studio names them, and which prompt a request is answered with."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlmodel import Session

from service.knowledge import definitions
from service.labeling import ProjectSchema
from service.predictor import TaskDataError
from service.prompting import default_prompt, shown_prompt
from service.runtime import events
from service.settings import settings
from service.store import repo
from service.store.models import PromptVersion


def project_key(project: str | int | None, label_config: str | None) -> str:
    """Label Studio's project id from "<id>.<created_ts>"; "cfg-<sha1[:12]>" of the config without one."""
    if project is not None and str(project).strip():
        return str(project).strip().split(".", 1)[0]
    digest = hashlib.sha1((label_config or "").encode("utf-8")).hexdigest()[:12]
    return f"cfg-{digest}"


def context_prompt(schema: ProjectSchema, context: Any) -> str | None:
    """The prompt an annotator typed in the prompt TextArea (interactive ``params.context``), if any."""
    if schema.prompt is None or not isinstance(context, dict):
        return None
    items = context.get("result")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("from_name") != schema.prompt.name:
            continue
        text = textarea_text(item.get("value"))
        if text:
            return text
    return None


def textarea_text(value: Any) -> str | None:
    """A TextArea region's text (``value.text`` is a list of lines, sometimes a string); None if blank."""
    text = value.get("text") if isinstance(value, dict) else None
    if isinstance(text, list):
        text = "\n".join(str(t) for t in text if t is not None)
    if not isinstance(text, str) or not text.strip():
        return None
    return text.strip()


def ensure_prompt(session: Session, project_id: str, schema: ProjectSchema) -> PromptVersion:
    """The project's active prompt; the default prompt (recorded and activated) when it has none."""
    return repo.active_prompt(session, project_id) or repo.record_prompt(
        session, project_id, default_prompt(schema), "default"
    )


def resolve_prompt(session: Session, project_id: str, schema: ProjectSchema, context: Any) -> PromptVersion:
    """The annotator's interactive prompt (recorded as a version), else the active one, else the default."""
    typed = context_prompt(schema, context)
    if typed is not None and len(typed) > settings.max_text_chars:  # the model reads it whole, like a task text
        raise TaskDataError(f"the prompt has {len(typed)} characters, more than the limit of {settings.max_text_chars}")
    if typed is not None:
        active = repo.active_prompt(session, project_id)
        shown = version_shown_as(session, project_id, schema, typed)
        if shown is not None:  # the Prompt box as Prompter filled it: that version, with its demonstrations
            return shown
        for control in schema.choices:  # a definition of a label outside the set: 422 naming it, nothing recorded
            definitions(typed, schema, control)
        # the typed instruction decides with the project's corrections and weights, as the active version did
        version = repo.record_prompt(
            session,
            project_id,
            typed,
            "annotator",
            parent_id=active.id if active else None,
            examples=active.examples if active else None,
            decision=active.decision if active else None,
        )
        events.emit_prompt_version(project_id, version.id, "typed")  # measured on the annotated tasks, later
        return version
    return ensure_prompt(session, project_id, schema)


def version_shown_as(session: Session, project_id: str, schema: ProjectSchema, text: str) -> PromptVersion | None:
    """The version whose Prompt-box text (``shown_prompt``) is ``text``, the active one first; None if none is."""
    versions = sorted(repo.list_prompt_versions(session, project_id), key=lambda v: (not v.is_active, -(v.id or 0)))
    wanted = text.strip()
    return next((v for v in versions if v.text != wanted and shown_prompt(v.text, schema).strip() == wanted), None)
