"""Issue 7, proof under load: one real `prompter serve` on the embedded model (Gemma 3 270M) takes, all at
once, 50 annotators' Shift+Enter requests, a 500-task "Retrieve predictions" and a burst of 200 annotations.

Every answer must be 200, or 503 with Retry-After and a JSON ``detail`` (the bounded queue saying "later");
labels come from the project's list; every acknowledged annotation is stored once; memory stays bounded.
Figures are printed (``pytest -s``) and written to the test's temporary folder; with
``PROMPTER_RESULTS_DIR=benchmarks/results`` they go there instead (tests never rewrite tracked files unasked).
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.demo.processes import PrompterServer
from service.settings import settings
from tests.load import workload
from tests.load.measure import Call, MemorySampler, cpu_seconds, percentile, post, process_tree

INTERACTIVE = 50
IDLE = 12  # Shift+Enter one at a time on the idle server, before the storm: the baseline of the p95 goal
DURING_BULK = 10  # then, once the 50 are answered, Shift+Enter one at a time while the bulk and background work run
BATCH_TASKS = 500
WEBHOOKS = 200
WEBHOOK_THREADS = 16
FIRST_ANNOTATION_ID = 10_001
# Generous: on this 2-core machine shared with other jobs the 500 tasks alone took 150 s (3.3 tasks/s with 0.7 of a
# core; 77 tasks/s when quiet); at load 10 from other jobs they took over 300 s (0.45 of a core). A request still
# unanswered after this counts as a hang.
CLIENT_TIMEOUT_S = 600.0
# `prompter bench` measured the embedded model's serving process at 1.7-2.3 GiB peak (bfloat16 / float32, 16 rows
# per forward); rows per forward are bounded by PROMPTER_BATCH_TOKENS and queued requests by PROMPTER_QUEUE_SIZE,
# so load may add request bodies and a few prefix caches, not another model's worth: 3 GiB left ~30% headroom.
# Since then the process tree holds a second model (MiniLM, the fused decision's evidence) and a second process (the
# front that answers /health): a CI-like run peaked at 3150 MiB (was 2332). 3.5 GiB bounds that with ~10% headroom;
# the growth is reported, not hidden.
RSS_BOUND_MIB = 3584


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrompterServer, MemorySampler]]:
    """`prompter serve` with default settings on a fresh SQLite database, its memory sampled from launch."""
    workdir = tmp_path_factory.mktemp("load")
    server = PrompterServer(workdir, ready_timeout=300, extra_env={"PROMPTER_MODEL": "embedded"})
    server.launch()
    assert server.process is not None
    sampler = MemorySampler(server.process.pid).start()
    try:
        server.wait_ready()
        yield server, sampler
    finally:
        sampler.stop()
        server.stop()


def _acceptable(call: Call) -> bool:
    if call.outcome == 200:
        return True
    detail = call.body.get("detail") if isinstance(call.body, dict) else None
    return call.outcome == 503 and bool(call.retry_after) and bool(detail)


def _drive(client: httpx.Client) -> tuple[list[Call], float | None]:
    """Everything at once, released by one barrier; the bulk request retries on 503 as a user would."""
    interactive = [
        workload.interactive_body(BATCH_TASKS + i, workload.PROMPTS[i % len(workload.PROMPTS)])
        for i in range(INTERACTIVE)
    ]
    batch = workload.batch_body(range(BATCH_TASKS))
    annotations: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()
    for i in range(WEBHOOKS):
        annotation_id = FIRST_ANNOTATION_ID + i
        annotations.put((annotation_id, workload.annotation_body(annotation_id, BATCH_TASKS + INTERACTIVE + i)))
    calls: list[Call] = []  # list.append is atomic
    batch_seconds: list[float] = []
    barrier = threading.Barrier(INTERACTIVE + 2 + WEBHOOK_THREADS)
    answered = threading.Semaphore(0)
    bulk_done = threading.Event()

    def annotator(body: dict[str, Any]) -> None:
        barrier.wait()
        calls.append(post(client, "interactive", "/predict", body))
        answered.release()

    def annotator_during_bulk() -> None:
        """Shift+Enter one at a time behind the bulk's chunks; only answers that came while it ran count."""
        barrier.wait()
        for _ in range(INTERACTIVE):
            answered.acquire()
        first = BATCH_TASKS + INTERACTIVE + WEBHOOKS + IDLE + 2
        for i in range(DURING_BULK):
            if bulk_done.is_set():
                return
            call = post(client, "during_bulk", "/predict", workload.interactive_body(first + i, workload.PROMPTS[0]))
            calls.append(call if not bulk_done.is_set() else Call("after_bulk", call.outcome, call.seconds))

    def retrieve_predictions() -> None:
        barrier.wait()
        started = time.perf_counter()
        while True:
            call = post(client, "batch", "/predict", batch)
            calls.append(call)
            if call.outcome == 503 and call.retry_after and time.perf_counter() - started < CLIENT_TIMEOUT_S:
                time.sleep(float(call.retry_after))
                continue
            if call.outcome == 200:
                batch_seconds.append(time.perf_counter() - started)
            bulk_done.set()
            return

    def label_studio_webhooks() -> None:
        barrier.wait()
        while True:
            try:
                annotation_id, body = annotations.get_nowait()
            except queue.Empty:
                return
            calls.append(post(client, "webhook", "/webhook", body, ref=annotation_id))

    work = [lambda body=body: annotator(body) for body in interactive]
    work += [retrieve_predictions, annotator_during_bulk] + [label_studio_webhooks] * WEBHOOK_THREADS
    threads = [threading.Thread(target=job) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return calls, batch_seconds[0] if batch_seconds else None


def _idle(client: httpx.Client) -> list[Call]:
    """Interactive requests one at a time on an idle server; before them, not counted, one that warms the prompt
    and one task under the active prompt (the bulk's, which /setup also warms in the background)."""
    first = BATCH_TASKS + INTERACTIVE + WEBHOOKS
    active = workload.interactive_body(first + IDLE + 1, workload.PROMPTS[0]) | {"params": {}}
    assert post(client, "warm", "/predict", active).outcome == 200
    calls = [
        post(client, "idle", "/predict", workload.interactive_body(first + i, workload.PROMPTS[0]))
        for i in range(IDLE + 1)
    ]
    return calls[1:]


def _label_errors(call: Call, tasks: int) -> list[str]:
    """What is wrong with a 200 /predict answer: one result per task, one label of the project's list each."""
    results = call.body.get("results") if isinstance(call.body, dict) else None
    if not isinstance(results, list) or len(results) != tasks:
        return [f"{call.kind}: {tasks} tasks but results {str(results)[:200]}"]
    errors = []
    for result in results:
        picked = [item["value"]["choices"] for item in result.get("result", []) if item.get("type") == "choices"]
        if len(picked) != 1 or len(picked[0]) != 1 or picked[0][0] not in workload.intents():
            errors.append(f"{call.kind}: not one label of the project's list: {picked}")
        if not 0.0 <= float(result.get("score", -1)) <= 1.0:
            errors.append(f"{call.kind}: score {result.get('score')}")
    return errors


def _stored(database: Path, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database, timeout=30) as connection:
        return connection.execute(sql, params).fetchall()


def _write_results(figures: dict[str, Any], folder: Path) -> Path:
    """load-test.{json,md} under ``$PROMPTER_RESULTS_DIR`` when set, else under ``folder`` (a temporary one)."""
    results = Path(os.environ.get("PROMPTER_RESULTS_DIR") or folder) / "load-test"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    rows = "\n".join(f"| {name} | {value} |" for name, value in figures.items())
    results.with_suffix(".md").write_text(
        "# Load test (tests/load/test_load.py)\n\n"
        f"{IDLE} interactive /predict one at a time on the idle server (idle_*), then {INTERACTIVE} concurrent "
        f"interactive /predict, one {BATCH_TASKS}-task /predict and {WEBHOOKS} ANNOTATION_CREATED webhooks (their "
        "corrections and refinements are background work) at once against one `prompter serve` on the embedded "
        "model; once the 50 are answered, Shift+Enter one at a time while the bulk still runs (during_bulk_*). "
        "p95_goal_s: idle p95 plus one forward chunk under load, the bound for during_bulk_p95_s.\n\n"
        f"| figure | value |\n| --- | --- |\n{rows}\n"
    )
    return results


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def test_concurrent_interactive_batch_and_webhooks(
    served: tuple[PrompterServer, MemorySampler], tmp_path: Path
) -> None:
    server, sampler = served
    assert settings.max_tasks_per_request >= BATCH_TASKS
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    with httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT_S, limits=limits) as client:
        setup = client.post("/setup", json=workload.setup_body())
        assert setup.status_code == 200, setup.text
        idle = _idle(client)
        started, cpu_before = time.perf_counter(), cpu_seconds(process_tree(sampler.pid))
        calls, batch_seconds = _drive(client)
        wall_seconds = time.perf_counter() - started
        server_cpu = cpu_seconds(process_tree(sampler.pid)) - cpu_before
        health = client.get("/health")
    peak_mib = sampler.stop()

    kinds = ("interactive", "batch", "webhook", "during_bulk", "after_bulk")
    by_kind = {kind: [c for c in calls if c.kind == kind] for kind in kinds}
    ok = {kind: [c for c in found if c.outcome == 200] for kind, found in by_kind.items()}
    load = Path("/proc/loadavg").read_text().split()[:3]
    idle_ok = [c.seconds for c in idle if c.outcome == 200]
    # one forward chunk under load: the bulk's time per chunk of PROMPTER_BATCH_SIZE tasks
    chunk_seconds = batch_seconds * settings.batch_size / BATCH_TASKS if batch_seconds else None
    idle_p95 = percentile(idle_ok, 95)
    figures = {
        "idle_interactive_p50_s": _round(percentile(idle_ok, 50)),
        "idle_interactive_p95_s": _round(idle_p95),
        "chunk_seconds_under_load": _round(chunk_seconds),
        "during_bulk_requests": len(by_kind["during_bulk"]),
        "during_bulk_p50_s": _round(percentile([c.seconds for c in ok["during_bulk"]], 50)),
        "during_bulk_p95_s": _round(percentile([c.seconds for c in ok["during_bulk"]], 95)),
        "p95_goal_s": _round(idle_p95 + chunk_seconds) if idle_p95 is not None and chunk_seconds else None,
        "interactive_requests": INTERACTIVE,
        "interactive_200": len(ok["interactive"]),
        "interactive_p50_s": _round(percentile([c.seconds for c in ok["interactive"]], 50)),
        "interactive_p95_s": _round(percentile([c.seconds for c in ok["interactive"]], 95)),
        "responses_503": sum(c.outcome == 503 for c in calls),
        "batch_tasks": BATCH_TASKS,
        "batch_seconds": _round(batch_seconds, 1),
        "batch_tasks_per_s": _round(BATCH_TASKS / batch_seconds, 1) if batch_seconds else None,
        "webhooks": WEBHOOKS,
        "webhook_200": len(ok["webhook"]),
        "webhook_p50_s": _round(percentile([c.seconds for c in ok["webhook"]], 50)),
        "webhook_p95_s": _round(percentile([c.seconds for c in ok["webhook"]], 95)),
        "wall_seconds": _round(wall_seconds, 1),
        "server_cpu_seconds": _round(server_cpu, 1),  # of 2 cores x wall: how much of the machine it got
        "peak_rss_mib": round(peak_mib),
        "rss_bound_mib": RSS_BOUND_MIB,
        "model_load_seconds": _round(server.startup_seconds, 1),
        "load_average": " ".join(load),
    }
    print("\nload test figures:\n" + "\n".join(f"  {name}: {value}" for name, value in figures.items()))
    print(f"written to {_write_results(figures, tmp_path)}.{{json,md}}")

    unexpected = [(c.kind, c.outcome, c.retry_after, str(c.body)[:300]) for c in calls if not _acceptable(c)]
    assert not unexpected, f"answers other than 200 or 503+Retry-After+detail: {unexpected[:10]}\n" + "\n".join(
        sorted(set(server.log_errors()))[:20]
    )
    assert len(idle_ok) == IDLE, [c.outcome for c in idle]
    assert len(by_kind["interactive"]) == INTERACTIVE and len(by_kind["webhook"]) == WEBHOOKS
    assert batch_seconds is not None, "the bulk request never got a 200"
    errors = [e for kind in ("interactive", "during_bulk") for c in ok[kind] for e in _label_errors(c, 1)]
    errors += [e for c in ok["batch"] for e in _label_errors(c, BATCH_TASKS)]
    assert not errors, errors[:10]

    acked = {c.ref: c for c in ok["webhook"]}
    assert all(c.body.get("annotation_id") == ref for ref, c in acked.items())
    rows = _stored(
        server.database_path,
        "SELECT id, choices FROM annotation WHERE id BETWEEN ? AND ?",
        (FIRST_ANNOTATION_ID, FIRST_ANNOTATION_ID + WEBHOOKS - 1),
    )
    counts = Counter(row[0] for row in rows)
    assert all(counts[ref] == 1 for ref in acked), {ref: counts[ref] for ref in acked if counts[ref] != 1}
    utterances = workload.utterances()
    gold = {FIRST_ANNOTATION_ID + i: utterances[BATCH_TASKS + INTERACTIVE + i]["label"] for i in range(WEBHOOKS)}
    wrong = [(i, c) for i, c in rows if i in acked and json.loads(c) != {"intent": [gold[i]]}]
    assert not wrong, wrong[:5]

    mv = ok["batch"][0].body["results"][0]["model_version"]
    (batch_stored,) = _stored(
        server.database_path,
        "SELECT COUNT(DISTINCT task_id) FROM prediction WHERE model_version = ? AND task_id BETWEEN 1 AND ?",
        (mv, BATCH_TASKS),
    )[0]
    assert batch_stored == BATCH_TASKS, f"{batch_stored} of {BATCH_TASKS} bulk predictions stored"

    assert health.status_code == 200 and health.json().get("model_state") == "ready", health.text
    assert peak_mib < RSS_BOUND_MIB, f"peak RSS {peak_mib:.0f} MiB over the {RSS_BOUND_MIB} MiB bound"
