"""The throwaway PostgreSQL cluster the store tests run on (tests/pg_cluster.py): created and removed cleanly."""

from __future__ import annotations

from pathlib import Path

from service.store import db
from tests.pg_cluster import PostgresCluster


def test_cluster_is_created_and_removed_without_a_trace() -> None:
    cluster = PostgresCluster.create()
    root = cluster.root
    try:
        url = cluster.create_database()
        engine = db.create_db_engine(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW server_encoding").scalar() == "UTF8"
            assert conn.exec_driver_sql("SHOW listen_addresses").scalar() == ""  # socket only: no port to collide
        engine.dispose()
    finally:
        cluster.remove()
    assert not Path(root).exists()
    assert not cluster.is_running()
