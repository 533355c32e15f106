from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.settings import settings
from tests.conftest import LOOPBACK


@pytest.fixture
def protected(db_url: str, tiny_engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(settings, "basic_auth_user", "ls")
    monkeypatch.setattr(settings, "basic_auth_pass", "s3cret")
    with TestClient(create_app(engine=tiny_engine), base_url=LOOPBACK) as client:
        yield client


def test_health_needs_credentials(protected: TestClient) -> None:
    response = protected.get("/health")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.json() == {"detail": "invalid or missing credentials"}
    ok = protected.get("/health", auth=("ls", "s3cret"))
    assert ok.status_code == 200
    assert ok.json()["status"] == "UP"


def test_wrong_password_or_user_is_401(protected: TestClient, ls: dict) -> None:
    for auth in (("ls", "wrong"), ("someone", "s3cret"), ("ls", "")):
        assert protected.post("/setup", json=ls["setup"], auth=auth).status_code == 401
    assert protected.post("/setup", json=ls["setup"], auth=("ls", "s3cret")).status_code == 200


def test_every_route_is_protected(protected: TestClient, ls: dict) -> None:
    calls = [
        ("GET", "/", None),
        ("GET", "/metrics", None),
        ("GET", "/versions", None),
        ("GET", "/projects/1/prompts", None),
        ("POST", "/predict", ls["predict_batch"]),
        ("POST", "/webhook", ls["webhook_annotation_created"]),
    ]
    for method, path, body in calls:
        assert protected.request(method, path, json=body).status_code == 401, path
    assert protected.get("/openapi.json").status_code == 404  # no schema served past the auth
    assert protected.get("/docs").status_code == 404


def test_malformed_authorization_header_is_401(protected: TestClient) -> None:
    response = protected.get("/health", headers={"Authorization": "Basic !!!notbase64"})
    assert response.status_code == 401


def test_one_credential_alone_leaves_auth_off(db_url: str, tiny_engine, monkeypatch) -> None:
    monkeypatch.setattr(settings, "basic_auth_user", "ls")
    monkeypatch.setattr(settings, "basic_auth_pass", None)
    with TestClient(create_app(engine=tiny_engine), base_url=LOOPBACK) as client:
        assert client.get("/health").status_code == 200
