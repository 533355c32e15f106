"""Warm a project before its first request: label tries compiled, the instruction's KV cache filled.

A project's first request would otherwise pay for compiling its label sets and prefilling its instruction
prefix (a full forward over hundreds of tokens with 77 labels listed). The service warms every known
project's active prompt before it reports ready, and a project again whenever it is set up or its active
prompt changes, in the background.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlmodel import Session

from constraints.base import Engine
from service.labeling import ProjectSchema, parse_config
from service.predictor import Prompt, label_tasks
from service.settings import settings
from service.store import repo
from service.store.db import sql_engine

log = logging.getLogger(__name__)

WARM_TEXT = "warm up"


def placeholder_task(schema: ProjectSchema) -> dict[str, Any]:
    """A task with every data key the config reads, in the shape its object tag expects."""
    data: dict[str, Any] = {}
    for obj in schema.objects:
        if obj.tag == "paragraphs":
            data[obj.value_key] = [{obj.name_key: "user", obj.text_key: WARM_TEXT}]
        else:
            data[obj.value_key] = WARM_TEXT
    return {"id": 0, "data": data}


def warm_prompt(engine: Engine, schema: ProjectSchema, prompt: Prompt) -> float:
    """Label one placeholder task with ``prompt`` (its demonstrations included); seconds taken."""
    started = time.perf_counter()
    if schema.choices:
        label_tasks(engine, schema, [placeholder_task(schema)], prompt, max_chars=settings.max_text_chars)
    return time.perf_counter() - started


def warm_project(engine: Engine, session: Session, project_id: str) -> float | None:
    """Warm the project's active prompt; None when it has no config or no active prompt yet."""
    project = repo.get_project(session, project_id)
    prompt = repo.active_prompt(session, project_id)
    if project is None or not project.label_config or prompt is None:
        return None
    schema = parse_config(project.label_config, settings.prompt_prefix, settings.response_name)
    seconds = warm_prompt(engine, schema, Prompt.of(prompt))
    log.info("project %s warmed (prompt #%s) in %.2f s", project_id, prompt.id, seconds)
    return seconds


def warm_known_projects(engine: Engine, limit: int) -> int:
    """Warm the ``limit`` most recently updated projects; how many were warmed. Failures are logged, not raised."""
    warmed = 0
    try:
        with Session(sql_engine()) as session:
            projects = repo.list_projects(session)
            recent = sorted(projects, key=lambda p: p.updated_at, reverse=True)[:limit]
            for project in recent:
                try:
                    warmed += warm_project(engine, session, project.id) is not None
                except Exception:  # a project whose config no longer parses must not stop the service
                    log.warning("could not warm project %s", project.id, exc_info=True)
    except Exception:
        log.warning("could not read projects to warm", exc_info=True)
    return warmed


def warm_in_background(engine: Engine, project_id: str) -> threading.Thread:
    """Warm one project in a daemon thread (after ``/setup`` or a change of its active prompt)."""

    def work() -> None:
        try:
            with Session(sql_engine()) as session:
                warm_project(engine, session, project_id)
        except Exception:
            log.warning("could not warm project %s", project_id, exc_info=True)

    thread = threading.Thread(target=work, name=f"warm-{project_id}", daemon=True)
    thread.start()
    return thread
