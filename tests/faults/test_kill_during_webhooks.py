"""SIGKILL `prompter serve` in the middle of a burst of webhooks, restart it on the same database and resend
what Label Studio would resend: every acknowledged annotation is there, none twice, the prompt versions intact.

The kill point is random; the seed is printed (PROMPTER_FAULT_SEED=<seed> replays it).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.demo.processes import PrompterServer
from tests.pg_cluster import PostgresCluster
from tests.served import LABELS, PROMPT, annotation_event, rows, server

BURST = 200
SENDERS = 6
RESENT_ACKED = 20  # acknowledged annotations sent again after the restart (a retry whose answer was lost)


def _label(annotation_id: int) -> str:
    return LABELS[annotation_id % 3]


def _send(url: str, ids: list[int], on_ack: Callable[[set[int]], None] = lambda acked: None) -> tuple[set[int], int]:
    """POST the annotations ``ids`` to ``url`` from SENDERS threads, as Label Studio's webhook workers would.
    ``on_ack`` sees the acknowledged ids after each acknowledgement. Returns those ids and how many failed."""
    todo: queue.Queue[int] = queue.Queue()
    for annotation_id in ids:
        todo.put(annotation_id)
    acked: set[int] = set()
    failed = [0]
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(timeout=10) as client:
            while True:
                try:
                    annotation_id = todo.get_nowait()
                except queue.Empty:
                    return
                body = annotation_event(annotation_id, 1000 + annotation_id, _label(annotation_id))
                try:
                    ok = client.post(f"{url}/webhook", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    if ok:
                        acked.add(annotation_id)
                        on_ack(acked)
                    else:
                        failed[0] += 1

    threads = [threading.Thread(target=send) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acked, failed[0]


def _killer(target: PrompterServer, kill_after: int) -> Callable[[set[int]], None]:
    """SIGKILL the server's process group when the ``kill_after``-th webhook is acknowledged."""
    assert target.process is not None
    group = target.process.pid

    def on_ack(acked: set[int]) -> None:
        if len(acked) == kill_after:
            os.killpg(group, signal.SIGKILL)

    return on_ack


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'prompter.sqlite3'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = cluster.create_database("faults")
    yield url
    cluster.drop_database(url)


def test_kill_during_webhook_burst(database_url: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    seed = int(os.environ.get("PROMPTER_FAULT_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    kill_after = rng.randint(BURST // 10, BURST * 3 // 4)
    print(f"\nseed {seed} ({database_url.split(':')[0]}): SIGKILL after {kill_after} acknowledged webhooks")
    env = {"PROMPTER_AGENT_DISAGREEMENTS_TRIGGER": "100000"}

    first = server(tmp_path / "first", tiny_model_dir, database_url, **env).start()
    try:
        seeded = httpx.post(f"{first.url}/webhook", json=annotation_event(0, 1000, _label(0)), timeout=30)
        assert seeded.status_code == 200, seeded.text
        versions = rows(database_url, "SELECT id, text, is_active, source FROM prompt_version ORDER BY id")
        assert [v[1:] for v in versions] == [(PROMPT, True, "annotator")]
        acked, failed = _send(first.url, list(range(1, BURST + 1)), _killer(first, kill_after))
        assert first.process is not None and first.process.wait(timeout=30) == -signal.SIGKILL
    finally:
        first.stop()
    stored_at_kill = {i for (i,) in rows(database_url, "SELECT id FROM annotation")}
    assert len(acked) >= kill_after and acked <= stored_at_kill, "an acknowledged annotation was lost"

    second = server(tmp_path / "second", tiny_model_dir, database_url, **env).start()
    try:
        unacked = sorted(set(range(1, BURST + 1)) - acked)
        again = unacked + rng.sample(sorted(acked), min(RESENT_ACKED, len(acked)))
        resent, refused = _send(second.url, again)
        assert refused == 0 and resent == set(again)
        errors = second.log_errors()
    finally:
        second.stop()

    stored = rows(database_url, "SELECT id, task_id, choices FROM annotation ORDER BY id")
    ids = [i for i, _, _ in stored]
    duplicates = len(ids) - len(set(ids)) + len(stored) - len({task for _, task, _ in stored})
    print(
        f"acknowledged before kill {len(acked)}, failed {failed}, stored at kill {len(stored_at_kill)}, "
        f"resent {len(again)} ({len(unacked)} unacknowledged), stored {len(stored)}, duplicates {duplicates}"
    )
    assert ids == list(range(BURST + 1)) and duplicates == 0
    as_json = [json.loads(c) if isinstance(c, str) else c for _, _, c in stored]  # SQLite's JSON is text
    assert as_json == [{"intent": [_label(i)]} for i in ids] and [t for _, t, _ in stored] == [1000 + i for i in ids]
    assert rows(database_url, "SELECT id, text, is_active, source FROM prompt_version ORDER BY id") == versions
    assert errors == []
    if database_url.startswith("sqlite"):
        assert rows(database_url, "PRAGMA integrity_check") == [("ok",)]
