"""A typed prompt is read by the model whole, like a task text: one over PROMPTER_MAX_TEXT_CHARS is refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.settings import settings


def test_overlong_interactive_prompt_is_422_and_not_recorded(
    client: TestClient, ls: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "max_text_chars", 500)
    body = ls["predict_interactive"]
    body["params"]["context"]["result"][0]["value"]["text"] = ["x" * 501]
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == "the prompt has 501 characters, more than the limit of 500"
    assert client.get("/metrics").json()["prompt_versions"] == 0

    body["params"]["context"]["result"][0]["value"]["text"] = ["x" * 500]
    assert client.post("/predict", json=body).status_code == 200
