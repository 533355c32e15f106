"""The agent inside the service: ``install()`` subscribes it to the webhook events at startup.

Every callback only queues work for the agent's worker thread and returns, so neither ``/webhook`` nor
``/predict`` ever waits for the agent; the worker's model calls go through the service's model queue at
batch priority, behind interactive requests.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlmodel import Session, col, select

from agent.corrections import record_corrections, withdraw
from agent.evaluate import NoAnnotations
from agent.loop import RefinementBusy, Worker, maybe_refine, project_schema, request_refinement
from constraints.base import Engine
from service.labeling import ProjectSchema
from service.predictor import Predict, Prompt, TaskContext
from service.runtime import events, host
from service.runtime.queue import Overloaded
from service.settings import settings
from service.store.db import sql_engine
from service.store.models import Annotation, AnnotationPublic, Correction, RefinementRun
from service.store.tasks import remember_tasks

log = logging.getLogger(__name__)

_worker: Worker | None = None

__all__ = ["install", "refine_now", "remember_tasks", "start_training", "worker"]


def queued_predictor(engine: Engine) -> Predict:
    """Model calls through the service's bounded model queue (batch priority), retried while it is full."""

    def predict(schema: ProjectSchema, tasks: list[dict[str, Any]], prompt: Prompt, contexts: list[TaskContext]):
        while True:
            try:
                future = host.submit(engine, schema, tasks, prompt, contexts)
            except Overloaded:
                time.sleep(1.0)
                continue
            return future.result()

    return predict


def _default_sessions() -> Session:
    return Session(sql_engine())


def _default_engine() -> Engine:
    return host.ready_engine()


def worker() -> Worker:
    global _worker
    if _worker is None:
        _worker = Worker(_default_engine, _default_sessions, queued_predictor)
    return _worker


def install(agent_worker: Worker | None = None) -> Worker:
    """Subscribe the agent to annotation events (idempotent). The app calls ``agent.hooks.install()`` once."""
    global _worker
    if agent_worker is not None:
        _worker = agent_worker
    if not settings.agent.enabled:
        log.info("the agent is off (PROMPTER_AGENT_ENABLED=false)")
        return worker()
    if on_annotation_saved not in events.on_annotation_saved:
        events.on_annotation_saved.append(on_annotation_saved)
    if on_annotations_deleted not in events.on_annotations_deleted:
        events.on_annotations_deleted.append(on_annotations_deleted)
    if catch_up not in events.on_engine_ready:
        events.on_engine_ready.append(catch_up)
    return worker()


def uninstall() -> None:
    for hooks, callback in (
        (events.on_annotation_saved, on_annotation_saved),
        (events.on_annotations_deleted, on_annotations_deleted),
        (events.on_engine_ready, catch_up),
    ):
        while callback in hooks:
            hooks.remove(callback)


def on_annotation_saved(annotation: AnnotationPublic) -> None:
    worker().submit(_record, annotation)


def on_annotations_deleted(project_id: str | None, annotation_ids: list[int]) -> None:
    worker().submit(_withdraw, list(annotation_ids))


def _record(annotation: AnnotationPublic) -> None:
    w = worker()
    with w.sessions() as session:
        # the stored copy is the truth: a later UPDATED may have reached another replica first, or a DELETE
        stored = session.get(Annotation, annotation.id)
        if stored is None:
            log.info("annotation %s was deleted before its correction was recorded", annotation.id)
            return
        annotation = AnnotationPublic.model_validate(stored, from_attributes=True)
        try:
            schema = project_schema(session, annotation.project_id)
        except NoAnnotations as exc:
            log.info("annotation %s: no correction recorded: %s", annotation.id, exc)
            return
        try:
            engine = w.engine()
        except Exception as exc:
            log.warning("annotation %s: no correction recorded, the model is not available: %s", annotation.id, exc)
            return
        record_corrections(session, engine, schema, annotation.project_id, annotation, predict=w.predict_for(engine))
        maybe_refine(w, session, annotation.project_id)


def uncorrected_annotations(session: Session) -> list[AnnotationPublic]:
    """Stored annotations with no correction row: their agent job was lost (a kill after the webhook's 200)."""
    corrected = select(Correction.annotation_id)
    rows = session.exec(select(Annotation).where(col(Annotation.id).not_in(corrected)).order_by(col(Annotation.id)))
    return [AnnotationPublic.model_validate(a, from_attributes=True) for a in rows]


def catch_up() -> int:
    """Queue the annotations a killed process left without corrections; how many. Runs once the model is ready."""
    with worker().sessions() as session:
        missing = uncorrected_annotations(session)
    if missing:
        log.info("%d stored annotations have no corrections yet: recording them", len(missing))
    for annotation in missing:
        worker().submit(_record, annotation)
    return len(missing)


def _withdraw(annotation_ids: list[int]) -> None:
    with worker().sessions() as session:
        withdraw(session, annotation_ids)


def start_training(project_id: str) -> RefinementRun | None:
    """Label Studio's START_TRAINING: queue a refinement; None (logged) when there is nothing to do."""
    with worker().sessions() as session:
        try:
            return request_refinement(worker(), session, project_id, "start_training")
        except (NoAnnotations, RefinementBusy) as exc:
            log.info("START_TRAINING for project %s: %s", project_id, exc)
            return None


def refine_now(session: Session, project_id: str) -> RefinementRun:
    """On demand (the API): queue a refinement and return its ``running`` run at once.

    Raises NoAnnotations (nothing to learn from) or RefinementBusy (one is running): both 409 with the message.
    """
    return request_refinement(worker(), session, project_id, "api")
