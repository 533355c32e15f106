"""Two `prompter serve` processes on one PostgreSQL database: what one stores the other sees, and every race
between them (the same webhook twice, refinements, accept / reject) is settled by the database."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from service.demo.processes import wait_until
from service.store.models import Proposal
from tests.replicas.conftest import Replicas
from tests.served import LABELS, PROMPT, annotation_event, database, post_concurrently, rows

REPEATS = 3  # each body goes this many times to each replica, all at once


def _post_everywhere(pair: Replicas, bodies: list[dict[str, Any]]) -> list[Any]:
    requests = [(f"{s.url}/webhook", body) for body in bodies for s in pair.both for _ in range(REPEATS)]
    return [status for status, _ in post_concurrently(requests)]


def _seed(pair: Replicas, project: int, annotations: range) -> None:
    """Annotations from alternating replicas, every third one disagreeing with the label cycle."""
    for n, i in enumerate(annotations):
        body = annotation_event(i, i, LABELS[(i + (n % 3 == 0)) % 3], project_id=project)
        response = httpx.post(f"{pair.both[n % 2].url}/webhook", json=body, timeout=30)
        assert response.status_code == 200, response.text


def _corrections_settled(url: str, project: int, expected: int) -> None:
    def done() -> bool:
        return rows(url, "SELECT count(*) FROM correction WHERE project_id = :p", p=str(project))[0][0] >= expected

    wait_until(done, 90, f"{expected} corrections of project {project}", interval=0.5)
    time.sleep(1.5)  # the other replica's worker may still be on the same annotations


def test_each_annotation_is_stored_once(replicas: Replicas) -> None:
    """The same CREATED then UPDATED bodies, 3 times to each replica at once: one row per annotation, its
    latest content, one correction per annotation and control, one prompt version, one active."""
    url, ids = replicas.database_url, range(1, 13)
    created = _post_everywhere(replicas, [annotation_event(i, 100 + i, LABELS[i % 3]) for i in ids])
    assert created == [200] * len(created), created
    updated = [annotation_event(i, 100 + i, LABELS[(i + 1) % 3], "ANNOTATION_UPDATED") for i in ids]
    statuses = _post_everywhere(replicas, updated)
    assert statuses == [200] * len(statuses), statuses
    _corrections_settled(url, 1, len(ids))

    stored = rows(url, "SELECT id, choices FROM annotation WHERE project_id = '1' ORDER BY id")
    assert [i for i, _ in stored] == list(ids)
    assert all(choices == {"intent": [LABELS[(i + 1) % 3]]} for i, choices in stored)
    corrections = rows(url, "SELECT annotation_id, control, gold FROM correction WHERE project_id = '1'")
    assert sorted((a, c) for a, c, _ in corrections) == [(i, "intent") for i in ids]
    stale = [(a, gold) for a, _, gold in corrections if gold != [LABELS[(a + 1) % 3]]]
    assert stale == [], "a correction kept the label of an older copy of its annotation"
    assert rows(url, "SELECT count(*) FROM task_data WHERE project_id = '1'") == [(len(ids),)]
    versions = rows(url, "SELECT text, is_active FROM prompt_version WHERE project_id = '1'")
    assert versions == [(PROMPT, True)]
    print(f"\n{len(created) + len(statuses)} webhooks -> {len(stored)} annotations, {len(corrections)} corrections")
    assert replicas.log_errors() == []


def _settled(url: str, project: int, expected: int, quiet: float = 3.0) -> list[tuple[Any, ...]]:
    """The project's corrections once ``expected`` exist and none changed for ``quiet`` seconds."""
    sql = "SELECT annotation_id, gold, predicted, agree FROM correction WHERE project_id = :p ORDER BY annotation_id"
    last: list[tuple[Any, ...]] = []
    deadline, still_since = time.monotonic() + 120, time.monotonic()
    while time.monotonic() < deadline:
        now = rows(url, sql, p=str(project))
        if now != last:
            last, still_since = now, time.monotonic()
        elif len(now) >= expected and time.monotonic() - still_since >= quiet:
            return now
        time.sleep(0.3)
    raise TimeoutError(f"corrections of project {project} never settled: {len(last)} of {expected}")


def test_an_update_on_one_replica_is_not_undone_by_the_other(replicas: Replicas) -> None:
    """120 webhooks at once on one replica (more than its 40 threads and 15 connections: all answered 200),
    then a load balancer's split: each annotation's CREATED to that replica, its UPDATED to the other. However
    the two agents' queues interleave, each correction ends with the updated labels. (In our runs the first
    replica's queue drained before the UPDATED arrived, so a late CREATED overwriting was not provoked.)"""
    url, project, ids = replicas.database_url, 4, range(400, 430)
    backlog = [annotation_event(i, i, LABELS[i % 3], project_id=5) for i in range(500, 620)]
    assert {status for status, _ in post_concurrently([(f"{replicas.a.url}/webhook", b) for b in backlog])} == {200}
    created = [annotation_event(i, i, LABELS[i % 3], project_id=project) for i in ids]
    updated = [annotation_event(i, i, LABELS[(i + 1) % 3], "ANNOTATION_UPDATED", project_id=project) for i in ids]
    for body in created:
        assert httpx.post(f"{replicas.a.url}/webhook", json=body, timeout=30).status_code == 200
    for body in updated:
        assert httpx.post(f"{replicas.b.url}/webhook", json=body, timeout=30).status_code == 200
    corrections = _settled(url, project, len(ids))
    stale = [a for a, gold, _, _ in corrections if gold != [LABELS[(a + 1) % 3]]]
    print(f"\nCREATED on a, UPDATED on b: {len(corrections)} corrections, {len(stale)} stale")
    assert [a for a, *_ in corrections] == list(ids)
    assert stale == []
    assert all(agree == (gold == predicted) for _, gold, predicted, agree in corrections)


def _watch_running(url: str, project: int, stop: threading.Event, peak: list[int]) -> None:
    with database(url) as connection:
        while not stop.is_set():
            sql = "SELECT count(*) FROM refinement_run WHERE project_id = :p AND status = 'running'"
            peak[0] = max(peak[0], connection.execute(sa.text(sql), {"p": str(project)}).scalar_one())
            connection.commit()
            time.sleep(0.02)


def test_one_refinement_per_project_across_replicas(replicas: Replicas) -> None:
    """POST /refine on both replicas at the same instant, three times: one 202 and one 409 each time (the
    lease), never two running runs (watched throughout), at most one proposal per run, one pending at most."""
    url, project = replicas.database_url, 2
    _seed(replicas, project, range(200, 216))
    _corrections_settled(url, project, 16)
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_watch_running, args=(url, project, stop, peak))
    watcher.start()
    started: list[int] = []
    try:
        for _ in range(3):
            answers = post_concurrently([(f"{s.url}/projects/{project}/refine", None) for s in replicas.both])
            assert sorted(status for status, _ in answers) == [202, 409], answers
            (run,) = [body for status, body in answers if status == 202]
            (busy,) = [body for status, body in answers if status == 409]
            assert "already running" in busy["detail"]
            started.append(run["id"])
            runs_done = f"SELECT status FROM refinement_run WHERE id = {run['id']} AND status <> 'running'"
            wait_until(lambda q=runs_done: bool(rows(url, q)), 90, f"refinement run {run['id']} finished", interval=0.3)
    finally:
        stop.set()
        watcher.join()
    runs = rows(url, "SELECT id, status, error FROM refinement_run WHERE project_id = :p ORDER BY id", p=str(project))
    assert [r[0] for r in runs] == started
    assert all(status == "done" for _, status, _ in runs), runs
    assert peak[0] == 1
    proposals = rows(
        url, "SELECT run_id, status, text FROM proposal WHERE project_id = :p AND status <> 'failed'", p=str(project)
    )
    per_run = [run_id for run_id, _, _ in proposals]
    assert len(per_run) == len(set(per_run)) and set(per_run) <= set(started)
    assert sum(status == "pending" for _, status, _ in proposals) <= 1
    print(f"\nrefine: 3 races, runs {started}, peak running {peak[0]}, proposals {len(proposals)}")
    assert replicas.log_errors() == []


def _pending_proposal(url: str, project: int, text: str) -> int:
    (base,) = rows(url, "SELECT id FROM prompt_version WHERE project_id = :p AND is_active", p=str(project))
    row = dict(project_id=str(project), base_version_id=base[0], strategy="definitions", text=text, status="pending")
    with database(url) as connection:
        created = datetime.now(UTC)
        proposal_id = connection.execute(
            sa.insert(Proposal.__table__).values(**row, created_at=created).returning(Proposal.__table__.c.id)
        ).scalar_one()
        connection.commit()
    return proposal_id


def _versions(url: str, project: int) -> list[tuple[int, bool]]:
    return rows(url, "SELECT id, is_active FROM prompt_version WHERE project_id = :p ORDER BY id", p=str(project))


def test_accept_and_reject_race_free(replicas: Replicas) -> None:
    """The same pending proposal accepted on both replicas at once: one 200, one 409, one new version, the
    only active one. Accept on one against reject on the other: one wins, the other 409."""
    url, project = replicas.database_url, 3
    _seed(replicas, project, range(300, 302))
    winners = {"accept": 0, "reject": 0}
    for round_ in range(8):
        before = _versions(url, project)
        proposal_id = _pending_proposal(url, project, f"{PROMPT} Round {round_}: answer with one label.")
        accept = (f"/proposals/{proposal_id}/accept", {"decided_by": "a"})
        other = accept if round_ < 4 else (f"/proposals/{proposal_id}/reject", {"reason": "no", "decided_by": "b"})
        answers = post_concurrently([(replicas.a.url + accept[0], accept[1]), (replicas.b.url + other[0], other[1])])
        assert sorted(status for status, _ in answers) == [200, 409], answers
        after = _versions(url, project)
        ((status,),) = rows(url, f"SELECT status FROM proposal WHERE id = {proposal_id}")
        won = "accept" if answers[0][0] == 200 or other is accept else "reject"
        winners[won] += round_ >= 4
        assert status == {"accept": "accepted", "reject": "rejected"}[won]
        assert len(after) == len(before) + (won == "accept")
        active_before = [v for v, active in before if active]
        assert [v for v, active in after if active] == ([after[-1][0]] if won == "accept" else active_before)
    print(f"\naccept/reject: 4 accept races, 4 accept-vs-reject races won {winners}")
    assert replicas.log_errors() == []
