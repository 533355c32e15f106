"""HTTP fixtures: the app over a fresh database and the tiny engine, and Label Studio's real request bodies."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.settings import settings
from tests.conftest import LOOPBACK

CAPTURED = Path(__file__).resolve().parents[1] / "e2e" / "fixtures" / "ls_requests.json"


@cache
def _captured() -> dict[str, Any]:
    return json.loads(CAPTURED.read_text())


@pytest.fixture
def ls() -> dict[str, Any]:
    """Bodies Label Studio 1.23.2 sent (setup, predict_batch, predict_interactive, webhook_*), fresh copies."""
    return {k: copy.deepcopy(v["body"]) for k, v in _captured().items() if isinstance(v, dict) and "body" in v}


@pytest.fixture
def client(db_url: str, tiny_engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(settings, "response_max_tokens", 0)  # tests that need it turn it on
    monkeypatch.setattr(settings, "host", "127.0.0.1")  # as `prompter serve --host 127.0.0.1`: review actions open
    with TestClient(create_app(engine=tiny_engine), base_url=LOOPBACK) as c:
        yield c


@pytest.fixture
def loading_client(db_url: str) -> Iterator[TestClient]:
    """An app whose model never finishes loading."""
    with TestClient(create_app(load_model=False), base_url=LOOPBACK) as c:
        yield c
