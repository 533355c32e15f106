"""Container health check: exit 0 when this host's ``prompter serve`` answers ``GET /health`` with status UP.

Run as ``python -m service.healthcheck`` (Dockerfile.gpu's HEALTHCHECK). It sends the basic-auth credentials
when the service has them, so a protected service still counts as healthy. Standard library only, besides the
settings: it runs every few seconds in the container.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request

from service.settings import settings

TIMEOUT_S = 4.0


def auth_headers() -> dict[str, str]:
    """The service's basic-auth header when it has credentials (also used by the front's poll of its backend)."""
    if not (settings.basic_auth_user and settings.basic_auth_pass):
        return {}
    token = base64.b64encode(f"{settings.basic_auth_user}:{settings.basic_auth_pass}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def check(host: str = "127.0.0.1", port: int | None = None) -> str | None:
    """None when healthy, else what is wrong."""
    request = urllib.request.Request(f"http://{host}:{port or settings.port}/health", headers=auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return f"/health answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"/health unreachable: {exc}"
    if body.get("status") != "UP":
        return f"/health says {body!r}"
    if body.get("model_state") == "error":  # loading still counts as healthy: the server answers
        return f"the model failed to load: {body.get('model_error')}"
    return None


def main() -> int:
    problem = check()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
