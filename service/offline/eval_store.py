"""`prompter eval`'s results kept in the store, one row per prompt version, so the review page can show them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from service.offline.project import StoreError
from service.store import repo
from service.store.models import Evaluation, EvaluationCreate


def evaluation_row(project_id: str, source: str, control: str, run_id: str, result: dict[str, Any]) -> EvaluationCreate:
    """The row of one version's result (``eval.evaluate_version`` plus its prompt version and model version)."""
    return EvaluationCreate(
        project_id=project_id,
        prompt_version_id=result["prompt_version_id"],
        run_id=run_id,
        model_version=result["model_version"],
        source=source,
        control=control,
        tasks=result["tasks"],
        accuracy=result["accuracy"],
        macro_f1=result["macro_f1"],
        micro_f1=result["micro_f1"],
        ece=result["ece"],
        target_accuracy=result.get("target_accuracy"),
        threshold=result.get("threshold"),
        per_label=result["per_label"],
        confusion=result.get("confusion"),
        reliability=result["reliability"],
        coverage=result["coverage"],
    )


def save_results(
    session: Session, project_id: str, source: str, control: str, results: list[dict[str, Any]]
) -> list[Evaluation]:
    """Store every version's result of one run in one transaction; StoreError if the store refuses."""
    run_id = uuid.uuid4().hex
    rows = [evaluation_row(project_id, source, control, run_id, result) for result in results]
    try:
        return repo.save_evaluations(session, rows)
    except SQLAlchemyError as exc:
        session.rollback()
        raise StoreError(f"cannot store the evaluation: {exc}") from None
