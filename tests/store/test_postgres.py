"""The throwaway PostgreSQL cluster the store tests run on (tests/pg_cluster.py): created and removed cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.store import db
from tests.pg_cluster import PostgresCluster, find_bindir


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


def test_a_killed_runs_cluster_is_reaped_by_the_next_one() -> None:
    """A test process killed with SIGKILL cannot clean up: the next cluster created stops and removes its one."""
    code = "from tests.pg_cluster import PostgresCluster; print(PostgresCluster.create().root, flush=True); input()"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    orphan = Path(child.stdout.readline().strip())
    orphan_cluster = PostgresCluster(root=orphan, bindir=find_bindir(), owner="postgres" if os.geteuid() == 0 else None)
    assert orphan_cluster.is_running()
    child.kill()
    child.wait(timeout=30)
    assert orphan_cluster.is_running()  # nobody stopped it

    cluster = PostgresCluster.create()
    try:
        assert not orphan.exists()
        assert not orphan_cluster.is_running()
        assert cluster.is_running()
    finally:
        cluster.remove()
