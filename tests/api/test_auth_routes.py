"""With basic auth on, every route the app has refuses a request without valid credentials.

The routes are read from the app itself (``app.routes``, included routers flattened), so a route added later,
the review page and its static files included, is covered without editing this test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount

from service.api.app import create_app
from service.settings import settings
from tests.conftest import LOOPBACK

try:  # FastAPI >= 0.16x keeps included routers lazily; this yields their routes with the full path
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI lists every route in app.routes
    iter_route_contexts = None

CREDENTIALS = ("ls", "s3cret")
WRONG = [None, ("ls", "wrong"), ("someone", "s3cret"), ("", "")]


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) for every route; path parameters filled with 1, mounts probed below their path."""
    routes = list(iter_route_contexts(app.routes)) if iter_route_contexts else app.routes
    calls = []
    for route in routes:
        path = route.path
        original = getattr(route, "original_route", route)
        if isinstance(original, Mount):
            calls.append(("GET", path.rstrip("/") + "/probe"))
            continue
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                calls.append((method, concrete))
    return calls


@pytest.fixture
def protected(db_url: str, tiny_engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(settings, "basic_auth_user", CREDENTIALS[0])
    monkeypatch.setattr(settings, "basic_auth_pass", CREDENTIALS[1])
    with TestClient(create_app(engine=tiny_engine), raise_server_exceptions=False, base_url=LOOPBACK) as client:
        yield client


def test_every_route_refuses_without_credentials(protected: TestClient) -> None:
    calls = _routes(protected.app)
    paths = {path for _, path in calls}
    assert {"/health", "/predict", "/webhook", "/setup"} <= paths
    assert any(path.startswith("/review") for path in paths), "the review page is among the routes"
    assert not {"/openapi.json", "/docs", "/redoc"} & paths  # no schema or docs served past the auth
    refused = []
    for method, path in calls:
        for auth in WRONG:
            response = protected.request(method, path, auth=auth, json={})
            if response.status_code != 401:
                refused.append(f"{method} {path} with {auth}: {response.status_code}")
            else:
                assert response.headers["WWW-Authenticate"].startswith("Basic"), path
                assert response.json() == {"detail": "invalid or missing credentials"}
    malformed = protected.get("/health", headers={"Authorization": "Basic %%%"})
    assert malformed.status_code == 401
    print(f"\n{len(calls)} routes x {len(WRONG)} kinds of missing/wrong credentials: all 401")
    assert refused == []


def test_every_route_lets_the_right_credentials_through(protected: TestClient) -> None:
    """The same calls with the right credentials get past the auth (whatever the route then answers)."""
    for method, path in _routes(protected.app):
        response = protected.request(method, path, auth=CREDENTIALS, json={})
        assert response.status_code != 401, f"{method} {path}"
        assert response.status_code < 500, f"{method} {path}: {response.text[:200]}"


def test_auth_off_ignores_a_malformed_authorization_header(db_url: str, tiny_engine) -> None:
    """Without auth configured the header means nothing: a client sending junk is not refused."""
    with TestClient(create_app(engine=tiny_engine), base_url=LOOPBACK) as client:
        response = client.get("/health", headers={"Authorization": "Basic bMtu6RYisBL9KDE6"})
        assert response.status_code == 200
