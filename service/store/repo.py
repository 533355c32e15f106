"""Reads and writes of the store: plain functions over a Session. Each write commits its own transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, SQLModel, col, delete, func, select

from constraints.errors import NotFound
from service.store.models import (
    PROMPT_SOURCES,
    Annotation,
    AnnotationCreate,
    Evaluation,
    EvaluationCreate,
    EvaluationHeadline,
    Prediction,
    PredictionCreate,
    Project,
    PromptVersion,
    utcnow,
)

# Projects


def upsert_rows(
    session: Session,
    model: type[SQLModel],
    values: list[dict[str, Any]],
    key: list[str],
    changed: list[str],
    where: Callable[[Any], Any] | None = None,
) -> bool:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET changed`` (``DO NOTHING`` when ``changed`` is empty) in the
    session's transaction, rows in key order: two processes writing the same key both succeed and one row
    remains. False, with nothing written, on a database without ON CONFLICT (the caller looks rows up)."""
    insert = _upsert_for(session)
    if insert is None:
        return False
    if values:
        statement = insert(model)
        if changed:
            statement = statement.on_conflict_do_update(
                index_elements=key,
                set_={name: statement.excluded[name] for name in changed},
                where=where(statement.excluded) if where else None,  # else the stored row stays as it is
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=key)
        session.execute(statement, sorted(values, key=lambda v: tuple(v[k] for k in key)))
    return True


def ensure_project(session: Session, project_id: str) -> None:
    """Add the project if it is not stored, in the session's transaction (no commit); safe across processes."""
    if session.get(Project, project_id) is not None:
        return
    now = utcnow()
    row = {"id": project_id, "label_config": "", "created_at": now, "updated_at": now}
    if not upsert_rows(session, Project, [row], ["id"], []):
        session.add(Project(id=project_id))
        session.flush()


def lock_project(session: Session, project_id: str) -> None:
    """Hold the project's row until the transaction ends (a no-op UPDATE: a row lock on PostgreSQL, the write
    lock on SQLite), so writes of the project's prompt versions take turns across threads and processes."""
    session.execute(update(Project).where(col(Project.id) == project_id).values(updated_at=Project.updated_at))


def upsert_project(session: Session, project_id: str, label_config: str | None = None) -> Project:
    """Create the project, or update its label config when one is given and differs."""
    project = session.get(Project, project_id)
    if project is None:
        ensure_project(session, project_id)
        session.commit()
        project = session.get(Project, project_id, populate_existing=True)
        assert project is not None
    if label_config is None or label_config == project.label_config:
        return project
    project.label_config = label_config
    project.updated_at = utcnow()
    session.add(project)
    session.commit()
    session.refresh(project)
    return project


def get_project(session: Session, project_id: str) -> Project | None:
    return session.get(Project, project_id)


def list_projects(session: Session) -> list[Project]:
    return list(session.exec(select(Project).order_by(col(Project.id))))


# Prompt versions


def active_prompt(session: Session, project_id: str) -> PromptVersion | None:
    statement = select(PromptVersion).where(
        PromptVersion.project_id == project_id, col(PromptVersion.is_active).is_(True)
    )
    return session.exec(statement.order_by(col(PromptVersion.id).desc())).first()


def list_prompt_versions(session: Session, project_id: str) -> list[PromptVersion]:
    statement = select(PromptVersion).where(PromptVersion.project_id == project_id)
    return list(session.exec(statement.order_by(col(PromptVersion.id))))


def find_prompt(session: Session, project_id: str, text: str) -> PromptVersion | None:
    """The version of ``project_id`` whose text is ``text`` (compared after stripping), if any.

    Several versions can share a text (accepted proposals that differ only in their demonstration pool):
    the active one wins, then the newest.
    """
    statement = select(PromptVersion).where(PromptVersion.project_id == project_id, PromptVersion.text == text.strip())
    order = (col(PromptVersion.is_active).desc(), col(PromptVersion.id).desc())
    return session.exec(statement.order_by(*order)).first()


def set_active(session: Session, version: PromptVersion) -> None:
    """Make ``version`` its project's only active version (in the caller's transaction; not committed)."""
    others = select(PromptVersion).where(
        PromptVersion.project_id == version.project_id,
        col(PromptVersion.is_active).is_(True),
        PromptVersion.id != version.id,
    )
    for other in session.exec(others):
        other.is_active = False
        session.add(other)
    session.flush()  # one active version per project is a unique index: deactivate before activating
    version.is_active = True
    session.add(version)


def record_prompt(
    session: Session,
    project_id: str,
    text: str,
    source: str,
    author: str | None = None,
    parent_id: int | None = None,
    activate: bool = False,
    note: str | None = None,
    examples: dict[str, Any] | None = None,
    decision: dict[str, Any] | None = None,
) -> PromptVersion:
    """Store a prompt version, or return the project's existing version with the same text.

    A project with no active version gets this one activated, so a project that has prompts always
    has exactly one active. With ``activate`` the returned version becomes the active one.
    """
    if source not in PROMPT_SOURCES:
        raise ValueError(f"unknown prompt source {source!r}; expected one of {PROMPT_SOURCES}")
    text = text.strip()
    if not text:
        raise ValueError("a prompt cannot be empty")
    ensure_project(session, project_id)
    lock_project(session, project_id)  # what find_prompt and active_prompt read stays true until the commit
    version = find_prompt(session, project_id, text)
    if version is None:
        version = PromptVersion(
            project_id=project_id, text=text, source=source, author=author, parent_id=parent_id, note=note,
            examples=examples, decision=decision,
        )  # fmt: skip
        session.add(version)
        session.flush()
    elif not activate and version.is_active:
        session.commit()  # ends the transaction, and with it the project's lock
        return version
    if activate or active_prompt(session, project_id) is None:
        set_active(session, version)
    session.commit()
    session.refresh(version)
    return version


def activate_prompt(session: Session, version_id: int) -> PromptVersion:
    """Make ``version_id`` its project's only active version; NotFound if there is no such version."""
    version = session.get(PromptVersion, version_id)
    if version is None:
        raise NotFound(f"no prompt version {version_id}")
    lock_project(session, version.project_id)
    set_active(session, version)
    session.commit()
    session.refresh(version)
    return version


# Predictions


PREDICTION_KEY = ("project_id", "task_id", "model_version")  # uq_prediction_task_version
RELOAD_CHUNK = 1000


def _upsert_for(session: Session) -> Any | None:
    """The dialect's ``insert`` with ON CONFLICT (SQLite and PostgreSQL), or None for another database."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql_insert
    if name == "sqlite":
        return sqlite_insert
    return None


def save_predictions(session: Session, rows: Iterable[PredictionCreate]) -> list[Prediction]:
    """Insert predictions in one transaction; a row with the same (project, task, model version) is replaced.

    On SQLite and PostgreSQL this is one INSERT ... ON CONFLICT DO UPDATE, so two processes storing the same
    task at once both succeed and one row remains. Rows without a task id are always added. Returns the stored
    rows in the order given (a key given twice keeps its last row, returned for both).
    """
    values = [{**row.model_dump(), "created_at": utcnow()} for row in rows]
    if not values:
        return []
    insert = _upsert_for(session)
    if insert is None:
        return _save_predictions_by_lookup(session, values)
    unique: dict[tuple[Any, ...] | int, dict[str, Any]] = {}
    for i, value in enumerate(values):  # one statement may not update the same row twice: the last one wins
        unique[i if value["task_id"] is None else tuple(value[k] for k in PREDICTION_KEY)] = value
    statement = insert(Prediction)
    statement = statement.on_conflict_do_update(
        index_elements=list(PREDICTION_KEY),
        set_={name: statement.excluded[name] for name in values[0] if name not in PREDICTION_KEY},
    ).returning(Prediction.id, sort_by_parameter_order=True)
    ids = dict(zip(unique, session.execute(statement, list(unique.values())).scalars(), strict=True))
    session.commit()
    stored = _load_predictions(session, list(ids.values()))
    return [
        stored[ids[i if value["task_id"] is None else tuple(value[k] for k in PREDICTION_KEY)]]
        for i, value in enumerate(values)
    ]


def _load_predictions(session: Session, ids: list[int]) -> dict[int, Prediction]:
    found: dict[int, Prediction] = {}
    for start in range(0, len(ids), RELOAD_CHUNK):
        statement = select(Prediction).where(col(Prediction.id).in_(ids[start : start + RELOAD_CHUNK]))
        found.update((p.id, p) for p in session.exec(statement.execution_options(populate_existing=True)))
    return found


def _save_predictions_by_lookup(session: Session, values: list[dict[str, Any]]) -> list[Prediction]:
    """The portable path for databases without ON CONFLICT: look each key up, then insert or update."""
    saved: list[Prediction] = []
    for value in values:
        existing = None
        if value["task_id"] is not None:
            existing = session.exec(
                select(Prediction).where(*(getattr(Prediction, k) == value[k] for k in PREDICTION_KEY))
            ).first()
        prediction = Prediction.model_validate(value) if existing is None else existing.sqlmodel_update(value)
        session.add(prediction)
        session.flush()  # later rows of the same batch see this one
        saved.append(prediction)
    session.commit()
    for prediction in saved:
        session.refresh(prediction)
    return saved


def list_model_versions(session: Session, project_id: str | None = None) -> list[str]:
    """Distinct model versions with stored predictions, newest first."""
    statement = select(Prediction.model_version, Prediction.created_at)
    if project_id is not None:
        statement = statement.where(Prediction.project_id == project_id)
    seen: dict[str, None] = {}
    for version, _ in session.exec(statement.order_by(col(Prediction.created_at).desc())):
        seen.setdefault(version, None)
    return list(seen)


# Annotations


def _not_older(incoming: Any) -> Any:
    """An incoming copy replaces the stored one unless Label Studio stamped it earlier (a late, stale webhook)."""
    stored = Annotation.__table__.c.ls_updated_at
    return or_(stored.is_(None), incoming.ls_updated_at.is_(None), incoming.ls_updated_at >= stored)


def _is_older(incoming: datetime | None, stored: datetime | None) -> bool:
    return incoming is not None and stored is not None and incoming < stored


def upsert_annotation(session: Session, annotation: AnnotationCreate) -> Annotation:
    """Store Label Studio's annotation under its own id, replacing an earlier copy (one row, however many
    processes store it at once)."""
    ensure_project(session, annotation.project_id)
    values = {**annotation.model_dump(), "stored_at": utcnow()}
    changed = [name for name in values if name != "id"]
    if upsert_rows(session, Annotation, [values], ["id"], changed, where=_not_older):
        session.commit()
        stored = session.get(Annotation, annotation.id, populate_existing=True)
        assert stored is not None
        return stored
    stored = session.get(Annotation, annotation.id)
    if stored is None:
        stored = Annotation.model_validate(annotation.model_dump())
    elif _is_older(annotation.ls_updated_at, stored.ls_updated_at):
        return stored
    else:
        stored.sqlmodel_update(annotation.model_dump())
        stored.stored_at = utcnow()
    session.add(stored)
    session.commit()
    session.refresh(stored)
    return stored


def delete_annotations(session: Session, ids: Iterable[int]) -> int:
    """Delete annotations by Label Studio id; returns how many were stored."""
    ids = list(ids)
    if not ids:
        return 0
    result = session.exec(delete(Annotation).where(col(Annotation.id).in_(ids)))
    session.commit()
    return result.rowcount or 0


def list_annotations(session: Session, project_id: str) -> list[Annotation]:
    statement = select(Annotation).where(Annotation.project_id == project_id)
    return list(session.exec(statement.order_by(col(Annotation.id))))


# Evaluations


def save_evaluations(session: Session, rows: Iterable[EvaluationCreate]) -> list[Evaluation]:
    """Store one `prompter eval` run's rows in one transaction; returns them with their ids."""
    stored = [Evaluation.model_validate(row.model_dump()) for row in rows]
    session.add_all(stored)
    session.commit()
    for row in stored:
        session.refresh(row)
    return stored


def list_evaluations(session: Session, prompt_version_id: int) -> list[Evaluation]:
    """The version's evaluations, newest first."""
    statement = select(Evaluation).where(Evaluation.prompt_version_id == prompt_version_id)
    return list(session.exec(statement.order_by(col(Evaluation.created_at).desc(), col(Evaluation.id).desc())))


HEADLINE_COLUMNS = (
    "id", "tasks", "accuracy", "macro_f1", "ece", "created_at", "trigger", "status", "reason",
    "compared_with_id", "compared_accuracy", "p_value", "significant",
)  # fmt: skip


def latest_evaluations(session: Session, project_id: str) -> dict[int, EvaluationHeadline]:
    """Prompt version id -> the headline figures and comparison of its newest evaluation (the curves and the
    per-task outcomes are not read)."""
    columns = [getattr(Evaluation, name) for name in HEADLINE_COLUMNS]
    statement = select(Evaluation.prompt_version_id, Evaluation.fixes, Evaluation.breaks, *columns)
    statement = statement.where(Evaluation.project_id == project_id)
    latest: dict[int, EvaluationHeadline] = {}
    for row in session.exec(statement.order_by(col(Evaluation.created_at), col(Evaluation.id))):
        latest[row.prompt_version_id] = EvaluationHeadline(
            **{name: getattr(row, name) for name in HEADLINE_COLUMNS},
            fixes=len(row.fixes or []),
            breaks=len(row.breaks or []),
        )
    return latest


def latest_evaluation(
    session: Session, version_id: int, tasks_key: str | None = None, ok: bool = True
) -> Evaluation | None:
    """The version's newest evaluation (with ``ok``, a successful one; with ``tasks_key``, one on those very
    tasks and gold labels), or None."""
    statement = select(Evaluation).where(Evaluation.prompt_version_id == version_id)
    if ok:
        statement = statement.where(Evaluation.status == "ok")
    if tasks_key is not None:
        statement = statement.where(Evaluation.tasks_key == tasks_key)
    return session.exec(statement.order_by(col(Evaluation.created_at).desc(), col(Evaluation.id).desc())).first()


@dataclass(frozen=True)
class LiveComparison:
    """A version's latest successful evaluation and, on the very same tasks, the version it was compared with
    (the active one when it was scored); ``active`` is None when the version was itself the active one."""

    evaluation: Evaluation
    active: Evaluation | None


def latest_comparison(session: Session, version_id: int) -> LiveComparison | None:
    """What the response and the review page say about a version: its latest successful evaluation (accuracy,
    ``tasks``, macro-F1, ECE, fixes, breaks, ``p_value``, ``significant``) and the compared version's figures
    on the same tasks. None when the version was never evaluated (e.g. its project has no annotated tasks)."""
    evaluation = latest_evaluation(session, version_id)
    if evaluation is None:
        return None
    active = None
    if evaluation.compared_with_id is not None:
        active = latest_evaluation(session, evaluation.compared_with_id, evaluation.tasks_key)
    return LiveComparison(evaluation, active)


def count_evaluations(session: Session) -> dict[str, int]:
    """How many evaluations the store holds, by status ("ok", "failed")."""
    statement = select(Evaluation.status, func.count()).group_by(col(Evaluation.status))
    return {status: n for status, n in session.exec(statement)}


def annotation_recency(session: Session, project_id: str) -> dict[int, int]:
    """Task id -> the id of its newest annotation (Label Studio's ids grow): the most recently annotated first."""
    statement = select(Annotation.task_id, func.max(Annotation.id)).where(Annotation.project_id == project_id)
    return {task_id: newest for task_id, newest in session.exec(statement.group_by(col(Annotation.task_id)))}


def recent_versions(session: Session, project_id: str, n: int) -> list[PromptVersion]:
    """The project's active version, then its ``n`` newest other versions."""
    versions = sorted(list_prompt_versions(session, project_id), key=lambda v: (not v.is_active, -(v.id or 0)))
    active = [v for v in versions if v.is_active]
    return active + [v for v in versions if not v.is_active][:n]
