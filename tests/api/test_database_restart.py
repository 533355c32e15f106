"""The service on PostgreSQL across a server restart: pool_pre_ping reconnects, nothing stored is lost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from service.api.app import create_app
from service.store import db, repo
from tests.conftest import LOOPBACK
from tests.pg_cluster import PostgresCluster

ON_POSTGRES = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def service(db_url: str, tiny_engine: Any) -> Iterator[TestClient]:
    with TestClient(create_app(engine=tiny_engine), base_url=LOOPBACK) as client:
        yield client


def _project_id(client: TestClient, body: dict[str, Any]) -> str:
    assert client.post("/setup", json=body).status_code == 200
    projects = client.get("/metrics").json()["projects"]
    assert projects == 1
    with Session(db.sql_engine()) as session:
        return repo.list_projects(session)[0].id


@ON_POSTGRES
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_service_reconnects_after_postgres_restart(
    postgres: PostgresCluster, service: TestClient, ls: dict[str, Any], mode: str
) -> None:
    """The pool's connections die with the server; pool_pre_ping replaces them once it is back.

    While the server is down the service answers 503 with Retry-After and a detail, not a 500; nothing
    stored before the restart is lost.
    """
    project_id = _project_id(service, ls["setup"])
    assert service.post("/webhook", json=ls["webhook_annotation_created"]).status_code == 200
    before = service.get("/metrics").json()
    assert before["annotations"] == 1

    postgres.stop(mode)  # "immediate" is a crash: the server recovers from its WAL on start
    try:
        down = service.get(f"/projects/{project_id}/prompts")
        assert down.status_code == 503, down.text
        assert "database" in down.json()["detail"]
        assert down.headers["Retry-After"]
        assert service.get("/health").status_code == 200  # health never touches the database
    finally:
        postgres.start()

    after = service.get("/metrics")
    assert after.status_code == 200, after.text
    assert {k: after.json()[k] for k in ("projects", "prompt_versions", "annotations")} == {
        k: before[k] for k in ("projects", "prompt_versions", "annotations")
    }
    assert service.post("/setup", json=ls["setup"]).status_code == 200
    assert service.get(f"/projects/{project_id}/prompts").status_code == 200
