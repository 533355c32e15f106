from __future__ import annotations

from datetime import datetime

from fastapi.testclient import TestClient
from sqlmodel import Session

from service.runtime import events
from service.store import db, repo


def _annotations(db_url: str, project_id: str = "1"):
    with Session(db.sql_engine(db_url)) as session:
        return repo.list_annotations(session, project_id)


def test_annotation_created_is_stored(client: TestClient, ls: dict, db_url: str) -> None:
    body = ls["webhook_annotation_created"]
    body["annotation"]["lead_time"] = 12.5
    response = client.post("/webhook", json=body)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "action": "ANNOTATION_CREATED", "annotation_id": 1, "deleted": None}
    (stored,) = _annotations(db_url)
    assert stored.task_id == 1
    assert stored.choices == {"intent": ["FileClaim"]}
    assert stored.prompt_text == "Classify the customer's intent."
    assert stored.completed_by == 1
    assert stored.lead_time == 12.5
    assert stored.ls_created_at.replace(tzinfo=None) == datetime(2025, 1, 1)
    assert stored.result == body["annotation"]["result"]
    with Session(db.sql_engine(db_url)) as session:
        assert repo.get_project(session, "1").label_config == body["project"]["label_config"]
        (prompt,) = repo.list_prompt_versions(session, "1")
    assert (prompt.text, prompt.source, prompt.author) == ("Classify the customer's intent.", "annotator", "1")


def test_annotation_updated_replaces(client: TestClient, ls: dict, db_url: str) -> None:
    client.post("/webhook", json=ls["webhook_annotation_created"])
    response = client.post("/webhook", json=ls["webhook_annotation_updated"])
    assert response.status_code == 200
    (stored,) = _annotations(db_url)
    assert stored.choices == {"intent": ["FileClaim", "GetQuote"]}


def test_task_id_from_task_object(client: TestClient, ls: dict, db_url: str) -> None:
    body = ls["webhook_annotation_created"]
    del body["annotation"]["task"]
    body["task"] = {"id": 9, "data": {}}
    assert client.post("/webhook", json=body).status_code == 200
    assert _annotations(db_url)[0].task_id == 9


def test_annotations_deleted_removes(client: TestClient, ls: dict, db_url: str) -> None:
    client.post("/webhook", json=ls["webhook_annotation_created"])
    body = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}, {"id": 404}], "project": {"id": 1}}
    response = client.post("/webhook", json=body)
    assert response.status_code == 200
    assert response.json()["deleted"] == 1
    assert _annotations(db_url) == []


def test_other_actions_are_acknowledged(client: TestClient, ls: dict) -> None:
    body = {"action": "SOMETHING_NEW", "payload": [1, 2]}
    response = client.post("/webhook", json=body)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert response.json()["action"] == "SOMETHING_NEW"


def test_start_training_is_acted_on(client: TestClient, ls: dict) -> None:
    """Acknowledged at once; the refinement it asks for is the agent's (a project without annotations: none)."""
    response = client.post("/webhook", json=ls["webhook_start_training"])
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["action"] == "START_TRAINING"


def test_malformed_webhooks(client: TestClient, ls: dict) -> None:
    response = client.post("/webhook", json={"annotation": {"id": 1}})
    assert response.status_code == 422
    assert response.json()["detail"] == "invalid request: action: Field required"
    body = ls["webhook_annotation_created"]
    del body["annotation"]["id"]
    response = client.post("/webhook", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == "ANNOTATION_CREATED: the annotation has no integer 'id'"
    response = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "annotation": {"id": 3}})
    assert response.status_code == 422
    assert response.json()["detail"] == "ANNOTATION_CREATED names no project"


def test_hooks_run_after_the_response(client: TestClient, ls: dict) -> None:
    saved, deleted = [], []
    events.on_annotation_saved.append(lambda a: saved.append((a.id, a.project_id, a.choices)))
    events.on_annotation_saved.append(lambda a: 1 / 0)  # a failing hook doesn't break the others
    events.on_annotations_deleted.append(lambda project, ids: deleted.append((project, ids)))
    events.on_annotations_deleted.insert(0, lambda project, ids: 1 / 0)
    assert client.post("/webhook", json=ls["webhook_annotation_created"]).status_code == 200
    body = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}], "project": {"id": 1}}
    assert client.post("/webhook", json=body).status_code == 200
    assert saved == [(1, "1", {"intent": ["FileClaim"]})]
    assert deleted == [("1", [1])]


def test_webhook_works_while_model_loads(loading_client: TestClient, ls: dict, db_url: str) -> None:
    assert loading_client.post("/webhook", json=ls["webhook_annotation_created"]).status_code == 200
    assert len(_annotations(db_url)) == 1


def test_annotated_task_data_is_kept_for_the_agent(client: TestClient, ls: dict, db_url: str) -> None:
    from service.store.tasks import task_data

    body = ls["webhook_annotation_created"]
    assert client.post("/webhook", json=body).status_code == 200
    project_id = str(body["project"]["id"])
    task_id = body["task"]["id"]
    with Session(db.sql_engine(db_url)) as session:
        assert task_data(session, project_id, [task_id]) == {task_id: body["task"]["data"]}
