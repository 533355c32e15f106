"""The issue's "done when": an interactive /predict on the prompt-centric config, served by the embedded model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.labeling import parse_config
from service.settings import settings
from tests.conftest import LOOPBACK

pytestmark = pytest.mark.model

CAPTURED = Path(__file__).resolve().parents[1] / "e2e" / "fixtures" / "ls_requests.json"


def test_interactive_predict_with_a_finance_dialogue(embedded_engine, db_url: str, monkeypatch) -> None:
    monkeypatch.setattr(settings, "response_max_tokens", 12)
    body = copy.deepcopy(json.loads(CAPTURED.read_text())["predict_interactive"]["body"])
    body["tasks"][0]["data"]["dialogue"] = [
        {"author": "agent", "text": "Thanks for calling Acme Insurance, how can I help?"},
        {"author": "customer", "text": "I was in a car accident this morning and need to file a claim."},
    ]
    labels = set(parse_config(body["label_config"]).choices[0].label_set.labels)
    with TestClient(create_app(engine=embedded_engine), base_url=LOOPBACK) as client:
        assert client.get("/health").json()["model_state"] == "ready"
        response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    regions = {r["from_name"]: r for r in result["result"]}
    chosen = regions["intent"]["value"]["choices"]
    assert chosen and set(chosen) <= labels and len(chosen) == len(set(chosen))
    assert 0 < result["score"] <= 1
    assert regions["response"]["value"]["text"][0].strip()
    context_prompt = body["params"]["context"]["result"][0]["value"]["text"]
    assert regions["prompt"]["value"]["text"] == ["\n".join(context_prompt)]
    assert result["model_version"].endswith("@gemma-3-270m")
