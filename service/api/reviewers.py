"""Who may change what the model does: the review actions (accept, reject, rollback, refine) and their reviewer.

A reviewer authenticates with HTTP basic auth, either as the basic-auth pair (BASIC_AUTH_USER / _PASS) or as one
of the accounts in PROMPTER_REVIEWERS (``name:password,...``; a password may be a ``pbkdf2_sha256$...`` hash
from :func:`hash_password`). The decision records the authenticated name. With no credentials configured, the
review actions are open on loopback only (as before, for one person on their own machine); bound beyond
loopback they are refused, with a detail naming the settings to set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from enum import StrEnum
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from service.api.security import is_loopback
from service.settings import settings

HASH_SCHEME = "pbkdf2_sha256"  # Django's format: pbkdf2_sha256$<iterations>$<salt>$<base64 digest>
HASH_ITERATIONS = 600_000
REALM = "Prompter"  # the same realm as the app-wide basic auth, so a browser reuses what it holds
SETTINGS_HINT = "set PROMPTER_REVIEWERS (name:password,...) or BASIC_AUTH_USER and BASIC_AUTH_PASS"


class ReviewAccess(StrEnum):
    CREDENTIALS = "credentials"  # a reviewer account or the basic-auth pair is required
    LOOPBACK_OPEN = "loopback-open"  # nothing configured, bound to loopback: open, as before
    REFUSED = "refused"  # nothing configured, bound beyond loopback


def hash_password(password: str, iterations: int = HASH_ITERATIONS, salt: str | None = None) -> str:
    """A PROMPTER_REVIEWERS password that is not kept in clear: ``pbkdf2_sha256$600000$<salt>$<digest>``."""
    salt = salt or secrets.token_hex(12)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"{HASH_SCHEME}${iterations}${salt}${base64.b64encode(digest).decode()}"


@lru_cache(maxsize=256)
def _matches_hash(stored: str, password: str) -> bool:
    """Cached, so a reviewer's page pays the slow hash once, not on every request."""
    _, iterations, salt, expected = stored.split("$", 3)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return secrets.compare_digest(base64.b64encode(digest).decode(), expected)


def is_hashed(stored: str) -> bool:
    parts = stored.split("$")
    return len(parts) == 4 and parts[0] == HASH_SCHEME and parts[1].isdigit()


def check_password(stored: str, password: str) -> bool:
    if is_hashed(stored):
        return _matches_hash(stored, password)
    return secrets.compare_digest(stored.encode(), password.encode())


def parse_reviewers(value: str) -> dict[str, str]:
    """``alice:pw,bob:pbkdf2_sha256$...`` -> {name: password or hash}; the password is what follows the first
    colon (it may hold colons, not commas). Entries without a name or a password are skipped."""
    accounts: dict[str, str] = {}
    for entry in value.split(","):
        name, sep, password = entry.strip().partition(":")
        if sep and name.strip() and password:
            accounts[name.strip()] = password
    return accounts


def accounts() -> dict[str, str]:
    """Everyone who may review: PROMPTER_REVIEWERS' accounts and the basic-auth user."""
    found = parse_reviewers(settings.reviewers.get_secret_value()) if settings.reviewers else {}
    if settings.basic_auth_user and settings.basic_auth_pass:
        found.setdefault(settings.basic_auth_user, settings.basic_auth_pass)
    return found


def authenticate(username: str, password: str) -> str | None:
    """The reviewer's name when the pair is an account's, else None. Slow for hashed accounts: not on the loop."""
    stored = accounts().get(username)
    return username if stored is not None and check_password(stored, password) else None


def review_access() -> ReviewAccess:
    """The rule in force, from the settings and the address Prompter listens on (PROMPTER_HOST / --host)."""
    if accounts():
        return ReviewAccess.CREDENTIALS
    return ReviewAccess.LOOPBACK_OPEN if is_loopback(settings.host) else ReviewAccess.REFUSED


def describe_access() -> str:
    """One line for the start-up log."""
    access = review_access()
    if access is ReviewAccess.CREDENTIALS:
        names = sorted(accounts())
        return f"review actions need reviewer credentials ({len(names)} account(s): {', '.join(names)})"
    if access is ReviewAccess.LOOPBACK_OPEN:
        return (
            f"review actions are open to anyone who reaches {settings.host} (loopback, no reviewer credentials "
            f"configured); to require them, {SETTINGS_HINT}"
        )
    return (
        f"review actions are refused: Prompter listens on {settings.host}, beyond loopback, and no reviewer "
        f"credentials are configured; {SETTINGS_HINT}"
    )


def basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if sep else None


async def require_reviewer(request: Request) -> str | None:
    """The authenticated reviewer's name; None when the review actions are open (loopback, nothing configured).
    403 when they are refused outright, 401 when credentials are required and missing or wrong."""
    access = review_access()
    if access is ReviewAccess.LOOPBACK_OPEN:
        return None
    if access is ReviewAccess.REFUSED:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=(
                f"review actions are refused: Prompter listens on {settings.host}, beyond loopback, and no "
                f"reviewer credentials are configured; {SETTINGS_HINT}, or bind to 127.0.0.1 (PROMPTER_HOST)"
            ),
        )
    credentials = basic_credentials(request)
    name = await run_in_threadpool(authenticate, *credentials) if credentials else None
    if name is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="review actions need a reviewer's credentials (PROMPTER_REVIEWERS or BASIC_AUTH_USER)",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}"'},
        )
    return name


ReviewerDep = Annotated[str | None, Depends(require_reviewer)]
