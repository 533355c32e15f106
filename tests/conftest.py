"""Shared fixtures: a fresh SQLite database per test, offline Hugging Face."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from sqlmodel import Session  # noqa: E402

from service import fusion  # noqa: E402
from service.settings import settings  # noqa: E402
from service.store import db  # noqa: E402
from tests.pg_cluster import PostgresCluster  # noqa: E402

DATABASES = ("sqlite", "postgresql")
LOOPBACK = "http://localhost"  # the base URL of in-process clients: Prompter on loopback answers loopback names only


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "databases: run each test using db_url on SQLite and on PostgreSQL (a throwaway cluster)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("databases") and "db_url" in metafunc.fixturenames:
        metafunc.parametrize("db_url", DATABASES, indirect=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the test session (tests/pg_cluster.py), removed at the end."""
    cluster = PostgresCluster.create()
    yield cluster
    cluster.remove()


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated database, made the configured one: SQLite in the test's folder by default; under the
    ``databases`` marker also a fresh database on the session's PostgreSQL cluster (dropped afterwards)."""
    kind = getattr(request, "param", "sqlite")
    cluster: PostgresCluster | None = request.getfixturevalue("postgres") if kind == "postgresql" else None
    url = cluster.create_database() if cluster else f"sqlite:///{tmp_path / 'prompter.sqlite3'}"
    monkeypatch.setattr(settings, "database_url", url)
    db.migrate(url)
    yield url
    db.dispose_engine()
    if cluster:
        cluster.drop_database(url)


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    with Session(db.sql_engine(db_url)) as s:
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
    """The engine, webhook hooks and latency samples are process-wide: start each test from nothing (and let the
    live evaluator finish a test's evaluations, so none lands in the next test's database)."""
    from agent import live_eval
    from service.api.telemetry import latencies
    from service.runtime import events, host

    def clear() -> None:
        events.on_prompt_version.clear()
        assert live_eval.idle(300), "the live evaluator did not finish"
        host.set_engine(None)
        events.on_annotation_saved.clear()
        events.on_annotations_deleted.clear()
        events.on_engine_ready.clear()
        events.on_prompt_version.clear()
        latencies.clear()

    clear()
    yield
    clear()


@pytest.fixture
def model_only_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Versions without fitted weights decide by the model's evidence alone: for tests of the agent's loop on a
    stub model whose mistakes the loop must fix (label knowledge alone would get their texts right at once)."""
    monkeypatch.setattr(fusion, "DEFAULT", fusion.Weights(model=1.0))
    monkeypatch.setattr(fusion, "DEFAULT_MULTI", fusion.Weights(model=1.0, bias=2.0, threshold=0.5))  # ~0.88 on top
