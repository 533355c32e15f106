"""Every error Prompter raises on purpose derives from ``PrompterError`` through one of four kinds.

The kind says what went wrong for the caller, not where: the HTTP layer (``service.api.errors``) maps each
kind to one status code, and the command-line tools print the message. The lowest layer owns the base so
that every layer can use it without importing a layer above.
"""

from __future__ import annotations


class PrompterError(Exception):
    """The base: a message meant for the person who sent the request or ran the command."""


class BadInput(PrompterError, ValueError):
    """The input cannot be used as given (HTTP 422): a config, a task, a label set, a payload."""


class NotFound(PrompterError, LookupError):
    """What the request names does not exist (HTTP 404)."""


class Conflict(PrompterError):
    """The request clashes with the current state (HTTP 409): nothing to learn from, already decided, busy."""


class Unavailable(PrompterError):
    """A resource cannot serve now; retrying after ``retry_after`` seconds may succeed (HTTP 503)."""

    retry_after: int = 5

    def __init__(self, detail: str = "unavailable; retry shortly", retry_after: int | None = None) -> None:
        super().__init__(detail)
        if retry_after is not None:
            self.retry_after = retry_after
