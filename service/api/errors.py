"""The one mapping of exceptions to HTTP answers. No stack trace leaves the server.

Prompter's own errors map by kind (``constraints.errors``): bad input 422, not found 404, conflict 409,
unavailable 503 with ``Retry-After``. The database's errors and request validation map here too.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from constraints.errors import BadInput, Conflict, NotFound, PrompterError, Unavailable

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_S = 2
STATUS_OF_KIND: tuple[tuple[type[PrompterError], int], ...] = (
    (BadInput, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (NotFound, status.HTTP_404_NOT_FOUND),
    (Conflict, status.HTTP_409_CONFLICT),
    (Unavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
)


def status_of(exc: PrompterError) -> int:
    """The HTTP status of one of Prompter's errors (500 for a kind the API should not see)."""
    return next((code for kind, code in STATUS_OF_KIND if isinstance(exc, kind)), status.HTTP_500_INTERNAL_SERVER_ERROR)


async def _prompter_error(request: Request, exc: PrompterError) -> JSONResponse:
    code = status_of(exc)
    if code == status.HTTP_500_INTERNAL_SERVER_ERROR:  # a kind no request should see: logged, no detail leaks
        return await _internal(request, exc)
    retry = getattr(exc, "retry_after", None) if isinstance(exc, Unavailable) else None
    headers = {"Retry-After": str(retry)} if retry else None
    return JSONResponse(status_code=code, content={"detail": str(exc)}, headers=headers)


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
    app.add_exception_handler(PrompterError, _prompter_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(OverflowError, _unstorable)
    app.add_exception_handler(Exception, _internal)
