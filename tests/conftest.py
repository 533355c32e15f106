"""Shared fixtures: a fresh SQLite database per test, offline Hugging Face."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from sqlmodel import Session  # noqa: E402

from service.settings import settings  # noqa: E402
from service.store import db  # noqa: E402


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated SQLite database in the test's folder, made the configured one."""
    url = f"sqlite:///{tmp_path / 'prompter.sqlite3'}"
    monkeypatch.setattr(settings, "database_url", url)
    db.migrate(url)
    yield url
    db.dispose_engine()


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    with Session(db.get_engine(db_url)) as s:
        yield s


@pytest.fixture(scope="session")
def tiny_engine():
    """constraints.local.LocalEngine over the tiny random Gemma 3 of tests/tiny_model.py (no downloads)."""
    from constraints.local import LocalEngine
    from tests.tiny_model import tiny_model

    model, tokenizer = tiny_model()
    return LocalEngine(model, tokenizer, "test/tiny-gemma3")


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """The engine, webhook hooks and latency samples are process-wide: start each test from nothing."""
    from service import events, runtime
    from service.telemetry import latencies

    def clear() -> None:
        runtime.set_engine(None)
        events.on_annotation_saved.clear()
        events.on_annotations_deleted.clear()
        latencies.clear()

    clear()
    yield
    clear()
