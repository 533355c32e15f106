"""Optional HTTP basic auth on every route, as label-studio-ml-backend does (BASIC_AUTH_USER / _PASS)."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPBasic
from starlette.concurrency import run_in_threadpool

from service.api import reviewers
from service.settings import settings

_basic = HTTPBasic(auto_error=False, realm="Prompter")


def auth_enabled() -> bool:
    """On when both the user and the password are set (one alone is ignored, like label-studio-ml-backend)."""
    return bool(settings.basic_auth_user and settings.basic_auth_pass)


async def require_basic_auth(request: Request) -> None:
    """Async on purpose: it never waits on the thread pool, so /health stays fast under load.

    The Authorization header is read only when auth is on: with auth off a malformed one is ignored, not a 401.
    Only a pair that is not the basic-auth one is checked against PROMPTER_REVIEWERS, on the thread pool (a hashed
    password is slow to check).
    """
    if not auth_enabled():
        return
    try:
        credentials = await _basic(request)
    except HTTPException:  # not base64, or not user:password
        credentials = None
    user, password = settings.basic_auth_user or "", settings.basic_auth_pass or ""
    if credentials is not None:
        user_ok = secrets.compare_digest(credentials.username.encode(), user.encode())
        pass_ok = secrets.compare_digest(credentials.password.encode(), password.encode())
        if user_ok and pass_ok:
            return
        # A reviewer's browser holds one pair for the whole page: PROMPTER_REVIEWERS accounts may read too.
        if settings.reviewers and await run_in_threadpool(
            reviewers.authenticate, credentials.username, credentials.password
        ):
            return
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="invalid or missing credentials",
        headers={"WWW-Authenticate": 'Basic realm="Prompter"'},
    )
