"""The image's HEALTHCHECK command (``python -m service.healthcheck``) against a real server on the loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from service.api.app import create_app
from service.runtime import host
from service.settings import settings


@pytest.fixture
def port(db_url: str, tiny_engine: Any) -> Iterator[int]:
    """``prompter serve``'s app under uvicorn on a free loopback port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(engine=tiny_engine), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _healthcheck(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTER_", "BASIC_AUTH_"))}
    return subprocess.run(
        [sys.executable, "-m", "service.healthcheck"],
        env={**clean, "PROMPTER_PORT": str(port), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthy_server_passes(port: int) -> None:
    result = _healthcheck(port)
    assert result.returncode == 0, result.stderr


def test_protected_server_passes_with_the_services_credentials(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "basic_auth_user", "ls")
    monkeypatch.setattr(settings, "basic_auth_pass", "s3cret")
    assert _healthcheck(port, BASIC_AUTH_USER="ls", BASIC_AUTH_PASS="s3cret").returncode == 0
    wrong = _healthcheck(port, BASIC_AUTH_USER="ls", BASIC_AUTH_PASS="nope")
    assert wrong.returncode == 1
    assert "401" in wrong.stderr


def test_failed_model_is_unhealthy(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "_state", host.EngineState("error", error="OSError: no such model"))
    result = _healthcheck(port)
    assert result.returncode == 1
    assert "no such model" in result.stderr


def test_nothing_listening_is_unhealthy() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    result = _healthcheck(free)
    assert result.returncode == 1
    assert "unreachable" in result.stderr
