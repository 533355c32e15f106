"""GET /metrics: what the store holds, the model's state, and request latencies per route."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import func, select

from service.api.deps import SessionDep
from service.api.telemetry import latencies
from service.runtime import host
from service.store import repo
from service.store.models import Annotation, Prediction, Project, PromptVersion

router = APIRouter(tags=["monitoring"])


@router.get("/metrics")
def metrics(session: SessionDep) -> dict[str, Any]:
    def count(table: type) -> int:
        return session.exec(select(func.count()).select_from(table)).one()

    current = host.state()
    return {
        "model_state": current.state,
        "model_id": current.model_id,
        "model_error": current.error,
        "model_load_seconds": current.load_seconds,
        "projects": count(Project),
        "prompt_versions": count(PromptVersion),
        "predictions": count(Prediction),
        "annotations": count(Annotation),
        "evaluations": {"ok": 0, "failed": 0, **repo.count_evaluations(session)},  # by status, live and `prompter eval`
        "latency": latencies.summary(),
    }
