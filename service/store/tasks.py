"""Task data kept from Label Studio's requests, and annotated tasks: that data plus the newest annotation's labels.

The webhook's annotation carries no task text, so the data of every task Prompter labels is kept to re-score it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from service.labeling import ProjectSchema
from service.store import repo
from service.store.models import TaskData, as_task_id, utcnow


@dataclass(frozen=True)
class AnnotatedTask:
    task_id: int
    data: dict[str, Any]
    gold: dict[str, list[str]]  # Choices control name -> labels (Label Studio values)

    def as_task(self) -> dict[str, Any]:
        """The Label Studio task shape ``label_tasks`` takes."""
        return {"id": self.task_id, "data": self.data}


def remember_tasks(session: Session, project_id: str, tasks: Iterable[Any]) -> int:
    """Keep the data of Label Studio tasks (``{"id", "data"}``) that carry an id; returns how many were kept.

    The webhook's annotation carries no task text, so the agent needs this to re-score annotated tasks.
    """
    rows = {}
    for task in tasks:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            continue
        task_id = as_task_id(task.get("id"))
        if task_id is not None:
            rows[task_id] = task["data"]
    if not rows:
        return 0
    repo.ensure_project(session, project_id)
    now = utcnow()
    fresh = [{"project_id": project_id, "task_id": i, "data": data, "updated_at": now} for i, data in rows.items()]
    repo.upsert_rows(session, TaskData, fresh, ["project_id", "task_id"], [])  # another process may add them too
    existing = {
        row.task_id: row
        for row in session.exec(
            select(TaskData).where(TaskData.project_id == project_id, col(TaskData.task_id).in_(list(rows)))
        )
    }
    for task_id, data in rows.items():
        row = existing.get(task_id)
        if row is None:
            session.add(TaskData(project_id=project_id, task_id=task_id, data=data))
        elif row.data != data:
            row.data = data
            row.updated_at = utcnow()
            session.add(row)
    session.commit()
    return len(rows)


def task_data(session: Session, project_id: str, task_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    ids = list(task_ids)
    if not ids:
        return {}
    statement = select(TaskData).where(TaskData.project_id == project_id, col(TaskData.task_id).in_(ids))
    return {row.task_id: row.data for row in session.exec(statement)}


def annotated_tasks(session: Session, project_id: str, schema: ProjectSchema) -> list[AnnotatedTask]:
    """Tasks with an annotation and stored data, gold from the newest annotation, ordered by task id.

    Only Choices controls of ``schema`` count; a task whose annotation answers none of them is left out.
    """
    names = {c.name for c in schema.choices}
    newest: dict[int, dict[str, list[str]]] = {}
    for annotation in repo.list_annotations(session, project_id):  # ordered by id: later ones win
        gold = {k: list(v) for k, v in (annotation.choices or {}).items() if k in names}
        if gold:
            newest[annotation.task_id] = gold
    datas = task_data(session, project_id, newest)
    out = []
    for task_id in sorted(newest):
        data = datas.get(task_id)
        if data is None or any(o.value_key not in data for o in schema.objects):
            continue
        out.append(AnnotatedTask(task_id, data, newest[task_id]))
    return out
