"""One SQLAlchemy engine per process and Alembic migrations run in code (the store imports no web framework)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import create_engine

import service.store.models  # noqa: F401  (registers every table on SQLModel.metadata)
from service.settings import settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x50524F4D  # PostgreSQL advisory lock key ("PROM") held while migrating
SQLITE_BUSY_TIMEOUT_MS = 5_000

_lock = threading.Lock()
_engine: Engine | None = None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """A new engine for ``url``; SQLite gets cross-thread use, WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if parsed.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool  # one shared connection, or every session sees an empty database
    else:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def sql_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the configured database); replaced if the URL changes."""
    global _engine
    url = url or settings.resolved_database_url()
    with _lock:
        # URLs compared parsed: rendering quotes a query's "/" (a unix socket's host), so strings never match
        if _engine is None or _engine.url != make_url(url):
            if _engine is not None:
                _engine.dispose()
            _engine = create_db_engine(url)
        return _engine


def dispose_engine() -> None:
    global _engine
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None


def alembic_config(url: str | None = None) -> Config:
    """Alembic configuration built in code: no alembic.ini needed at run time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", (url or settings.resolved_database_url()).replace("%", "%%"))
    return config


def migrate(url: str | None = None) -> None:
    """Bring the database at ``url`` (default: the configured one) to the latest schema; idempotent.

    On PostgreSQL replicas starting together take turns (an advisory lock held until the migration commits):
    the first migrates, the others find the schema at head. SQLite's write lock already serialises them.
    """
    engine = sql_engine(url)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
