"""`prompter serve`'s front (service/front.py): /health from memory with the service's auth, everything else passed
through unchanged, and no backend left behind when the front dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import psutil

from service.demo.processes import PrompterServer
from tests.served import LABEL_CONFIG, save_tiny_model


def test_the_front_passes_requests_through_and_guards_health(tmp_path: Path) -> None:
    env = {
        "PROMPTER_MODEL": str(save_tiny_model(tmp_path / "tiny")),
        "PROMPTER_HOME": str(tmp_path),
        "PROMPTER_THREADS": "1",
        "BASIC_AUTH_USER": "ls",
        "BASIC_AUTH_PASS": "s3cret",
    }
    with PrompterServer(tmp_path / "serve", ready_timeout=120, extra_env=env) as server:
        assert server.process is not None
        backend = psutil.Process(server.process.pid).children()
        assert len(backend) == 1 and "--uds" in backend[0].cmdline()
        with httpx.Client(base_url=server.url, timeout=30) as anonymous:
            assert anonymous.get("/health").status_code == 401
            assert anonymous.post("/setup", json={}).status_code == 401  # the backend's own auth, passed through
        with httpx.Client(base_url=server.url, timeout=30, auth=server.auth) as client:
            health = client.get("/").json()
            assert health["model_state"] == "ready" and health["model_id"] == "tiny"
            bad = client.post("/predict", content=b"{not json", headers={"Content-Type": "application/json"})
            assert bad.status_code == 400 and "not valid JSON" in bad.json()["detail"]
            task = {"id": 1, "data": {"text": "borrow money"}}
            body = {"tasks": [task], "project": "3.1", "label_config": LABEL_CONFIG}
            predicted = client.post("/predict?x=1", json=body)
            assert predicted.status_code == 200 and len(predicted.json()["results"]) == 1
            assert client.get("/nope").json() == {"detail": "Not Found"}
        os.kill(server.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while backend[0].is_running() and backend[0].status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not backend[0].is_running() or backend[0].status() == psutil.STATUS_ZOMBIE


def test_the_front_stops_with_code_1_when_its_backend_dies(tmp_path: Path) -> None:
    env = {"PROMPTER_MODEL": str(save_tiny_model(tmp_path / "tiny")), "PROMPTER_HOME": str(tmp_path)}
    with PrompterServer(tmp_path / "serve", ready_timeout=120, extra_env=env) as server:
        assert server.process is not None
        (backend,) = psutil.Process(server.process.pid).children()
        backend.kill()
        assert server.process.wait(timeout=30) == 1
