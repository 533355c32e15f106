"""Exceptions the service turns into HTTP answers, and the handlers that do it. No stack trace leaves."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from constraints.base import EngineNotReady, EngineRefused, EngineUnavailable
from service.labeling import ConfigError
from service.predictor import TaskDataError

log = logging.getLogger(__name__)

LOADING_RETRY_AFTER_S = 5
UNAVAILABLE_RETRY_AFTER_S = 5
DATABASE_RETRY_AFTER_S = 2


class Overloaded(RuntimeError):
    """Too much work is queued; the client should retry after ``retry_after`` seconds."""

    def __init__(self, detail: str = "the model is busy; retry shortly", retry_after: int = 2) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    return f"{where}: {error.get('msg', 'invalid')}"


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        reason = (bad_json.get("ctx") or {}).get("error", "cannot decode")
        position = bad_json.get("loc", ("body", "?"))[-1]
        detail = f"the request body is not valid JSON: {reason} (at character {position})"
        return JSONResponse(status_code=status.HTTP_400_BAD_REQUEST, content={"detail": detail})
    detail = "invalid request: " + "; ".join(_describe(e) for e in errors)
    content = {"detail": detail, "errors": jsonable_encoder(errors, exclude={"input", "url"})}
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content=content)


async def _unprocessable(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": str(exc)})


async def _not_ready(_: Request, exc: EngineNotReady) -> JSONResponse:
    from service import runtime  # here, not at the top: runtime's model queue imports this module

    headers = {"Retry-After": str(LOADING_RETRY_AFTER_S)} if runtime.state().state == "loading" else None
    return JSONResponse(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, content={"detail": str(exc)}, headers=headers)


async def _unavailable(_: Request, exc: EngineUnavailable) -> JSONResponse:
    """The model server (vLLM) is down, slow or failing: the client may retry; the reason says which."""
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": str(exc)},
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
    )


async def _overloaded(_: Request, exc: Overloaded) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": exc.detail},
        headers={"Retry-After": str(exc.retry_after)},
    )


async def _database_unavailable(request: Request, exc: OperationalError | PoolTimeout) -> JSONResponse:
    """The database is down, restarting or locked, or every pooled connection is busy: retryable, and the
    pool reconnects once it is back."""
    log.warning("%s %s: database unavailable: %s", request.method, request.url.path, getattr(exc, "orig", None) or exc)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": "the database is unavailable; retry shortly"},
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot hold: a number out of its integer range (PostgreSQL's DataError, or the
    OverflowError Python's sqlite3 raises past 64 bits), a NUL byte in PostgreSQL text, a string too long."""
    orig = getattr(exc, "orig", None) or exc
    reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    log.warning("%s %s: unstorable value: %s", request.method, request.url.path, reason)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": f"a value in the request cannot be stored or looked up: {reason}"},
    )


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content={"detail": "internal error, see the server log"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ConfigError, _unprocessable)
    app.add_exception_handler(TaskDataError, _unprocessable)
    app.add_exception_handler(EngineNotReady, _not_ready)
    app.add_exception_handler(EngineUnavailable, _unavailable)
    app.add_exception_handler(EngineRefused, _unprocessable)  # e.g. a prompt over the vLLM server's context
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(OverflowError, _unstorable)
    app.add_exception_handler(Exception, _internal)
