"""GET /health and GET /: answered at once from memory; never touches the model or the database."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.protocol import HealthResponse
from service.runtime import host

router = APIRouter(tags=["health"])


@router.get("/health")
@router.get("/")
async def health() -> HealthResponse:
    current = host.state()
    return HealthResponse(model_state=current.state, model_id=current.model_id, model_error=current.error)
