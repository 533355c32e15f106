from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.settings import settings
from service.store import db, repo
from service.store.models import Prediction
from tests.conftest import LOOPBACK


def _labels(ls: dict) -> set[str]:
    return set(re.findall(r'<Choice value="([^"]+)"', ls["setup"]["schema"]))


def _stored(db_url: str) -> list[Prediction]:
    with Session(db.sql_engine(db_url)) as session:
        return list(session.exec(select(Prediction).order_by(Prediction.task_id)))


def test_batch_predict_one_result_per_task(client: TestClient, ls: dict, db_url: str, monkeypatch) -> None:
    monkeypatch.setattr(settings, "response_max_tokens", 3)
    setup_version = client.post("/setup", json=ls["setup"]).json()["model_version"]
    body = ls["predict_batch"]
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == len(body["tasks"]) == 3
    labels = _labels(ls)
    for result in results:
        assert result["model_version"] == setup_version
        assert 0 < result["score"] <= 1
        regions = {r["from_name"]: r for r in result["result"]}
        assert regions["intent"]["type"] == "choices"
        assert regions["intent"]["to_name"] == "chat"
        assert set(regions["intent"]["value"]["choices"]) <= labels
        assert "response" not in regions  # bulk predictions skip the free-text answer by default
    stored = _stored(db_url)
    assert [p.task_id for p in stored] == [1, 2, 3]
    assert [p.result for p in stored] == [r["result"] for r in results]
    assert stored[0].model_version == setup_version
    assert stored[0].labels["intent"] == next(
        r["value"]["choices"] for r in results[0]["result"] if r["from_name"] == "intent"
    )


def test_bulk_response_when_configured(client: TestClient, ls: dict, monkeypatch) -> None:
    monkeypatch.setattr(settings, "response_max_tokens", 3)
    monkeypatch.setattr(settings, "response_in_batch", True)
    results = client.post("/predict", json=ls["predict_batch"]).json()["results"]
    for result in results:
        regions = {r["from_name"]: r for r in result["result"]}
        assert regions["response"]["type"] == "textarea" and regions["response"]["value"]["text"][0].strip()


def test_predict_twice_upserts(client: TestClient, ls: dict, db_url: str) -> None:
    client.post("/predict", json=ls["predict_batch"])
    client.post("/predict", json=ls["predict_batch"])
    assert len(_stored(db_url)) == 3


def test_predict_for_project_never_set_up(client: TestClient, ls: dict, db_url: str) -> None:
    body = ls["predict_batch"] | {"project": "42.1700000000"}
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    with Session(db.sql_engine(db_url)) as session:
        assert repo.get_project(session, "42").label_config == body["label_config"]
        version = repo.active_prompt(session, "42")
    assert version.source == "default"
    assert response.json()["results"][0]["model_version"] == f"prompt-{version.id}@test/tiny-gemma3"


def test_interactive_prompt_is_a_new_model_version(client: TestClient, ls: dict, db_url: str, monkeypatch) -> None:
    monkeypatch.setattr(settings, "response_max_tokens", 3)
    default_version = client.post("/setup", json=ls["setup"]).json()["model_version"]
    response = client.post("/predict", json=ls["predict_interactive"])
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["model_version"] != default_version
    regions = {r["from_name"]: r for r in result["result"]}
    assert regions["prompt"]["value"]["text"] == ["Classify the customer's intent."]
    assert regions["response"]["type"] == "textarea" and regions["response"]["value"]["text"][0].strip()
    with Session(db.sql_engine(db_url)) as session:
        versions = repo.list_prompt_versions(session, "1")
        assert [(v.source, v.is_active) for v in versions] == [("default", True), ("annotator", False)]
        assert versions[1].text == "Classify the customer's intent."
        assert versions[1].parent_id == versions[0].id
    assert result["model_version"] == f"prompt-{versions[1].id}@test/tiny-gemma3"
    again = client.post("/predict", json=ls["predict_interactive"]).json()["results"][0]
    assert again["model_version"] == result["model_version"]  # same text, same version


def test_multiline_context_prompt_is_joined(client: TestClient, ls: dict, db_url: str) -> None:
    body = ls["predict_interactive"]
    body["params"]["context"]["result"][0]["value"]["text"] = ["Line one.", "Line two."]
    assert client.post("/predict", json=body).status_code == 200
    with Session(db.sql_engine(db_url)) as session:
        texts = [v.text for v in repo.list_prompt_versions(session, "1")]
    assert "Line one.\nLine two." in texts


def test_active_prompt_is_used(client: TestClient, ls: dict, db_url: str) -> None:
    with Session(db.sql_engine(db_url)) as session:
        version = repo.record_prompt(session, "1", "Pick the intent of {dialogue}.", "user", activate=True)
    results = client.post("/predict", json=ls["predict_batch"]).json()["results"]
    assert {r["model_version"] for r in results} == {f"prompt-{version.id}@test/tiny-gemma3"}
    assert client.get("/versions", params={"project": "1"}).json() == {
        "versions": [f"prompt-{version.id}@test/tiny-gemma3"]
    }


def test_empty_task_list_is_an_empty_answer(client: TestClient, ls: dict) -> None:
    response = client.post("/predict", json=ls["predict_batch"] | {"tasks": []})
    assert response.status_code == 200
    assert response.json() == {"results": []}


def test_no_tasks_is_422(client: TestClient, ls: dict) -> None:
    body = {k: v for k, v in ls["predict_batch"].items() if k != "tasks"}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json() == {"detail": "the request has no tasks"}


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post("/predict", content=b'{"tasks": [', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("the request body is not valid JSON")


def test_wrong_types_get_a_readable_detail(client: TestClient) -> None:
    response = client.post("/predict", json={"tasks": {"id": 1}})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert detail.startswith("invalid request: tasks:")
    response = client.post("/predict", json=[1, 2])
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


def test_task_missing_data_key_names_it(client: TestClient, ls: dict, db_url: str) -> None:
    body = ls["predict_batch"]
    body["tasks"][1]["data"] = {"text": "no dialogue here"}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "task 1" in detail and "id 2" in detail and "'dialogue'" in detail
    assert _stored(db_url) == []


def test_empty_text_is_422(client: TestClient, ls: dict) -> None:
    body = ls["predict_batch"]
    body["tasks"][0]["data"]["dialogue"] = []
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]


def test_text_over_the_limit_is_422(client: TestClient, ls: dict, monkeypatch) -> None:
    monkeypatch.setattr(settings, "max_text_chars", 50)
    response = client.post("/predict", json=ls["predict_batch"])
    assert response.status_code == 422
    assert "limit of 50" in response.json()["detail"]


def test_config_without_choices_is_422(client: TestClient, ls: dict) -> None:
    body = ls["predict_batch"] | {"label_config": '<View><Text name="t" value="$text"/></View>'}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert "no Choices" in response.json()["detail"]


def test_no_config_and_unknown_project_is_422(client: TestClient, ls: dict) -> None:
    body = ls["predict_batch"] | {"label_config": None, "project": "77.1"}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == "the request has no label_config and project 77 was never set up"


def test_config_from_store_when_request_has_none(client: TestClient, ls: dict) -> None:
    client.post("/setup", json=ls["setup"])
    response = client.post("/predict", json=ls["predict_batch"] | {"label_config": None})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 3


def test_too_many_tasks_is_422(client: TestClient, ls: dict, monkeypatch) -> None:
    monkeypatch.setattr(settings, "max_tasks_per_request", 2)
    response = client.post("/predict", json=ls["predict_batch"])
    assert response.status_code == 422
    assert response.json()["detail"] == "3 tasks in one request; the limit is 2"


def test_loading_model_is_503_with_retry_after(loading_client: TestClient, ls: dict, db_url: str) -> None:
    response = loading_client.post("/predict", json=ls["predict_batch"])
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "loading" in response.json()["detail"]
    with Session(db.sql_engine(db_url)) as session:
        assert repo.list_prompt_versions(session, "1") == []  # nothing recorded for a request not served


def test_model_error_is_503_with_reason(loading_client: TestClient, ls: dict) -> None:
    from service.runtime import host

    def broken():
        raise OSError("weights not found")

    host.start_loading(broken).join(5)
    response = loading_client.post("/predict", json=ls["predict_batch"])
    assert response.status_code == 503
    assert "Retry-After" not in response.headers
    assert response.json()["detail"] == "the model failed to load: OSError: weights not found"


def test_overloaded_is_503_with_retry_after(client: TestClient, ls: dict, monkeypatch) -> None:
    from service.runtime import host
    from service.runtime.queue import Overloaded

    async def full(*args, **kwargs):
        raise Overloaded("the queue is full", retry_after=7)

    monkeypatch.setattr(host, "run_predictions", full)
    response = client.post("/predict", json=ls["predict_batch"])
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json() == {"detail": "the queue is full"}


def test_internal_error_hides_the_trace(db_url: str, tiny_engine, ls: dict, monkeypatch, caplog) -> None:
    from service.api.app import create_app
    from service.runtime import host

    async def crash(*args, **kwargs):
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr(host, "run_predictions", crash)
    with TestClient(create_app(engine=tiny_engine), raise_server_exceptions=False, base_url=LOOPBACK) as client:
        client.post("/setup", json=ls["setup"])
        response = client.post("/predict", json=ls["predict_batch"])
        assert response.status_code == 500
        assert response.json() == {"detail": "internal error, see the server log"}
        assert "secret" not in response.text
        assert "ZeroDivisionError" in caplog.text
        assert client.get("/metrics").json()["prompt_versions"] == 1  # what was stored before stays
