from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlmodel import Session

from service.store import db, repo

NO_CONTROLS = '<View><Text name="text" value="$text"/></View>'


def test_setup_returns_model_version_and_stores_project(client: TestClient, ls: dict, db_url: str) -> None:
    started = time.perf_counter()
    response = client.post("/setup", json=ls["setup"])
    assert time.perf_counter() - started < 3
    assert response.status_code == 200
    version = response.json()["model_version"]
    with Session(db.sql_engine(db_url)) as session:
        project = repo.get_project(session, "1")
        assert project.label_config == ls["setup"]["schema"]
        active = repo.active_prompt(session, "1")
        assert active.source == "default"
        assert "AddDependent" in active.text
    assert version == f"prompt-{active.id}@test/tiny-gemma3"


def test_setup_is_stable_across_calls(client: TestClient, ls: dict) -> None:
    first = client.post("/setup", json=ls["setup"]).json()["model_version"]
    assert client.post("/setup", json=ls["setup"]).json()["model_version"] == first


def test_setup_accepts_extra_params_dict(client: TestClient, ls: dict) -> None:
    body = ls["setup"] | {"extra_params": {"temperature": 0.1, "nested": {"a": [1, 2]}}}
    assert client.post("/setup", json=body).status_code == 200


def test_setup_without_models_loaded_does_not_wait(loading_client: TestClient, ls: dict) -> None:
    response = loading_client.post("/setup", json=ls["setup"])
    assert response.status_code == 200
    assert response.json()["model_version"].startswith("prompt-1@")


def test_setup_rejects_config_without_controls(client: TestClient, ls: dict) -> None:
    response = client.post("/setup", json=ls["setup"] | {"schema": NO_CONTROLS})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail == "the labeling config has no Choices, no Labels and no response TextArea for Prompter to fill"


def test_setup_rejects_broken_xml_and_missing_schema(client: TestClient, ls: dict) -> None:
    response = client.post("/setup", json=ls["setup"] | {"schema": "<View><Choices"})
    assert response.status_code == 422
    assert "not valid XML" in response.json()["detail"]
    body = {k: v for k, v in ls["setup"].items() if k != "schema"}
    response = client.post("/setup", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == "invalid request: schema: Field required"


def test_setup_without_project_uses_config_hash(client: TestClient, ls: dict, db_url: str) -> None:
    assert client.post("/setup", json=ls["setup"] | {"project": None}).status_code == 200
    with Session(db.sql_engine(db_url)) as session:
        projects = {p.id for p in repo.list_projects(session)}
    assert len(projects) == 1
    (only,) = projects
    assert only.startswith("cfg-") and len(only) == 16


def test_project_and_prompt_routes(client: TestClient, ls: dict) -> None:
    assert client.get("/projects/1/prompts").status_code == 404
    assert client.get("/projects/1").json() == {"detail": "no project 1"}
    client.post("/setup", json=ls["setup"])
    assert client.get("/projects/1").json()["label_config"] == ls["setup"]["schema"]
    (prompt,) = client.get("/projects/1/prompts").json()
    assert prompt["source"] == "default" and prompt["is_active"] is True and prompt["parent_id"] is None


def test_model_id_before_loading_matches_the_loader(monkeypatch) -> None:
    from constraints import loading
    from service.runtime import host
    from service.settings import settings

    monkeypatch.setattr(settings, "model", loading.EMBEDDED)
    assert host.expected_model_id() == loading.EMBEDDED_NAME
    monkeypatch.setattr(settings, "model", "google/gemma-3-270m-it")
    assert host.expected_model_id() == "gemma-3-270m-it"
