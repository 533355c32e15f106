"""Every pooled database connection busy: a 503 with Retry-After and a detail, not a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from service.store import db


def test_a_request_that_waits_out_the_pool_gets_503(
    client: TestClient, ls: dict, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post("/setup", json=ls["setup"]).status_code == 200
    tight = create_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    monkeypatch.setattr(db, "_engine", tight)
    with tight.connect():  # the only connection, held
        response = client.post("/webhook", json=ls["webhook_annotation_created"])
    assert response.status_code == 503
    assert response.headers["Retry-After"] and "database" in response.json()["detail"]
    assert client.post("/webhook", json=ls["webhook_annotation_created"]).status_code == 200  # free again
    tight.dispose()
