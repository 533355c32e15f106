"""Corrections: what the annotator answered next to what the model predicted, per Choices or Labels control.

A Labels control's gold and predicted lists hold ``start:end:label`` keys (``service.spans``): ``agree`` is
exact agreement (the same spans, the same labels); ``span_agreement`` gives the overlap agreement too."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, delete, func, select

from constraints.base import Engine
from service.labeling import ProjectSchema
from service.predictor import Predict, Prompt, direct_predictor, prepare
from service.projects import ensure_prompt
from service.span_metrics import both
from service.spans import gold_keys, parse_key
from service.store import repo
from service.store.models import Annotation, AnnotationPublic, Correction, Prediction, utcnow
from service.store.tasks import remember_tasks, task_data
from service.versions import model_version

log = logging.getLogger(__name__)


def _prediction(
    session: Session,
    engine: Engine,
    schema: ProjectSchema,
    project_id: str,
    task_id: int,
    data: dict[str, Any] | None,
    predict: Predict,
) -> Prediction | None:
    """The stored prediction for the task under the active version and this model; computed if missing."""
    version = ensure_prompt(session, project_id, schema)
    mv = model_version(version.id, engine.model_id)
    stored = session.exec(
        select(Prediction).where(
            Prediction.project_id == project_id, Prediction.task_id == task_id, Prediction.model_version == mv
        )
    ).first()
    if stored is not None:
        return stored
    if data is None:
        data = task_data(session, project_id, [task_id]).get(task_id)
    if data is None:
        log.warning("project %s task %s: no prediction and no task data; correction not recorded", project_id, task_id)
        return None
    tasks, prompt = [{"id": task_id, "data": data}], Prompt.of(version)
    pred = predict(schema, tasks, prompt, prepare(engine, schema, tasks, prompt))[0]
    return repo.save_predictions(session, [pred.row(project_id, task_id, version.id, mv)])[0]


def record_corrections(
    session: Session,
    engine: Engine,
    schema: ProjectSchema,
    project_id: str,
    annotation: AnnotationPublic | Annotation,
    task: dict[str, Any] | None = None,
    predict: Predict | None = None,
) -> list[Correction]:
    """Pair an annotation with the prediction for its task under the version in force; one row per control.

    ``task`` (``{"id", "data"}``, e.g. the webhook's ``task``) is stored for later re-scoring; without it the
    data kept from earlier requests is used. Re-recording an annotation (ANNOTATION_UPDATED) replaces its rows.
    Returns the rows written (none when the task's data is unknown and no prediction was stored).
    """
    if task is not None:
        remember_tasks(session, project_id, [task])
    answered = [c for c in schema.choices if c.name in (annotation.choices or {})]
    span_gold = {c.name: gold_keys(c, annotation.result) for c in schema.spans}
    spanned = [c for c in schema.spans if any(r.get("from_name") == c.name for r in annotation.result or [])]
    if not answered and not spanned:
        return []
    data = task.get("data") if isinstance(task, dict) else None
    prediction = _prediction(
        session, engine, schema, project_id, annotation.task_id, data, predict or direct_predictor(engine)
    )
    if prediction is None:
        return []
    rows = []
    for control in [*answered, *spanned]:
        gold = list(annotation.choices[control.name]) if control in answered else span_gold[control.name]
        predicted = list(prediction.labels.get(control.name, []))
        rows.append(
            {
                "project_id": project_id,
                "task_id": annotation.task_id,
                "annotation_id": annotation.id,
                "control": control.name,
                "gold": gold,
                "predicted": predicted,
                "agree": set(gold) == set(predicted),
                "prompt_version_id": prediction.prompt_version_id,
                "model_version": prediction.model_version,
                "created_at": utcnow(),
            }
        )
    changed = ["task_id", "gold", "predicted", "prompt_version_id", "model_version", "agree"]
    # Every replica that received the annotation's webhook records it: one row per (annotation, control) remains.
    if not repo.upsert_rows(session, Correction, rows, ["annotation_id", "control"], changed):
        stored = session.exec(select(Correction).where(Correction.annotation_id == annotation.id))
        existing = {c.control: c for c in stored}
        for row in rows:
            old = existing.get(row["control"])
            session.add(old.sqlmodel_update(row) if old is not None else Correction(**row))
    session.commit()
    statement = select(Correction).where(
        Correction.annotation_id == annotation.id,
        col(Correction.control).in_([c.name for c in [*answered, *spanned]]),
    )
    return list(session.exec(statement.order_by(col(Correction.id)).execution_options(populate_existing=True)))


def span_agreement(correction: Correction) -> dict[str, float]:
    """A Labels correction's F1 between gold and predicted spans: exact, and partial (overlap, same label)."""
    gold, pred = [[parse_key(k) for k in correction.gold]], [[parse_key(k) for k in correction.predicted]]
    scores = both(gold, pred)
    return {"exact_f1": scores["exact"]["f1"], "partial_f1": scores["partial"]["f1"]}


def withdraw(session: Session, annotation_ids: Iterable[int]) -> int:
    """Forget the corrections of deleted annotations; returns how many rows went."""
    ids = list(annotation_ids)
    if not ids:
        return 0
    result = session.exec(delete(Correction).where(col(Correction.annotation_id).in_(ids)))
    session.commit()
    return result.rowcount or 0


def list_corrections(session: Session, project_id: str, disagreements_only: bool = False) -> list[Correction]:
    statement = select(Correction).where(Correction.project_id == project_id)
    if disagreements_only:
        statement = statement.where(col(Correction.agree).is_(False))
    return list(session.exec(statement.order_by(col(Correction.id))))


def latest_correction_id(session: Session, project_id: str) -> int:
    return session.exec(select(func.max(Correction.id)).where(Correction.project_id == project_id)).one() or 0


def new_disagreements(session: Session, project_id: str, after_id: int) -> int:
    """Disagreements recorded after correction ``after_id`` (the last refinement's high-water mark)."""
    statement = select(func.count()).where(
        Correction.project_id == project_id, col(Correction.agree).is_(False), col(Correction.id) > after_id
    )
    return session.exec(statement).one()
