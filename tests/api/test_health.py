from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from service.api.app import create_app
from service.runtime import host
from tests.conftest import LOOPBACK


def test_health_ready(client: TestClient) -> None:
    for path in ("/health", "/"):
        response = client.get(path)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "UP"
        assert body["model_class"] == "Prompter"
        assert body["model_state"] == "ready"
        assert body["model_id"] == "test/tiny-gemma3"


def test_health_while_loading_answers_at_once(db_url: str) -> None:
    release = threading.Event()

    def slow_loader():
        release.wait(30)
        raise RuntimeError("never mind")

    with TestClient(create_app(load_model=False), base_url=LOOPBACK) as client:
        host.start_loading(slow_loader)
        started = time.perf_counter()
        body = client.get("/health").json()
        assert time.perf_counter() - started < 0.5
        assert body["status"] == "UP" and body["model_state"] == "loading"
        release.set()
        for _ in range(100):
            if host.state().state != "loading":
                break
            time.sleep(0.01)
        body = client.get("/health").json()
    assert body["model_state"] == "error"
    assert body["model_error"] == "RuntimeError: never mind"


def test_background_loading_installs_the_engine(db_url: str, tiny_engine) -> None:
    with TestClient(create_app(load_model=False), base_url=LOOPBACK) as client:
        host.start_loading(lambda: tiny_engine).join(120)  # loading includes the embedder and warm-ups
        body = client.get("/health").json()
    assert body["model_state"] == "ready"
    assert body["model_id"] == tiny_engine.model_id
    assert host.state().load_seconds is not None


def test_metrics_counts_and_latencies(client: TestClient, ls: dict) -> None:
    client.post("/setup", json=ls["setup"])
    client.post("/predict", json=ls["predict_batch"])
    client.get("/health")
    metrics = client.get("/metrics").json()
    assert metrics["model_state"] == "ready"
    assert metrics["projects"] == 1
    assert metrics["prompt_versions"] == 1
    assert metrics["predictions"] == len(ls["predict_batch"]["tasks"])
    assert metrics["annotations"] == 0
    assert metrics["latency"]["POST /predict"]["count"] == 1
    assert metrics["latency"]["GET /health"]["p95_s"] >= metrics["latency"]["GET /health"]["p50_s"] >= 0


def test_unknown_route_is_404_json(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
