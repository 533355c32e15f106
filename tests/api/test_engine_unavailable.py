"""A model server that cannot answer (vLLM down) is a 503 with Retry-After; one that refuses a prompt, a 422."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from constraints.vllm import VLLMEngine
from service.runtime import host
from tests.tiny_model import tiny_tokenizer


def test_vllm_down_is_a_503_with_retry_after_and_the_reason(client: TestClient, ls: dict) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    host.set_engine(VLLMEngine("http://vllm.test", tiny_tokenizer(), "tiny", transport=httpx.MockTransport(refuse)))
    assert client.post("/setup", json=ls["setup"]).status_code == 200
    response = client.post("/predict", json=ls["predict_interactive"])
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert response.json()["detail"].startswith("the vLLM server at http://vllm.test is unreachable: ConnectError")


def test_a_prompt_the_vllm_server_refuses_is_a_422_with_its_reason(client: TestClient, ls: dict) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        message = "This model's maximum context length is 2048 tokens. However, you requested 2300 tokens."
        return httpx.Response(400, json={"error": {"message": message}})

    host.set_engine(VLLMEngine("http://vllm.test", tiny_tokenizer(), "tiny", transport=httpx.MockTransport(refuse)))
    assert client.post("/setup", json=ls["setup"]).status_code == 200
    response = client.post("/predict", json=ls["predict_interactive"])
    assert response.status_code == 422, response.text
    assert "maximum context length is 2048 tokens" in response.json()["detail"]
