"""The model queue: order, merging of compatible chunks, priority, bounds and failures."""

from __future__ import annotations

import threading
import time

import pytest

from constraints.errors import BadInput
from service.predictor import TaskPrediction
from service.runtime.queue import MicroBatcher, Overloaded


class Recorder:
    """A batch function that records each call and can be held to let work pile up."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, list[int]]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, key, tasks, examples):
        self.gate.wait(5)
        if any(t.get("boom") for t in tasks):
            raise ValueError("bad task")
        self.calls.append((key, [t["id"] for t in tasks]))
        return [TaskPrediction([], 0.5, {"k": [str(t["id"])]}, None, 0.0) for t in tasks]


def tasks(*ids: int) -> list[dict]:
    return [{"id": i} for i in ids]


def test_results_come_back_in_task_order_across_chunks() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, batch_size=3, max_pending=4)
    preds = batcher.submit("k", tasks(*range(8))).result(5)
    assert [p.labels["k"][0] for p in preds] == [str(i) for i in range(8)]
    assert [len(ids) for _, ids in rec.calls] == [3, 3, 2]


def test_queued_requests_with_the_same_key_share_a_batch_and_interactive_goes_first() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, batch_size=4, max_pending=10)
    rec.gate.clear()
    blocker = batcher.submit("other", tasks(100))
    time.sleep(0.05)  # the worker now holds the blocker's batch
    bulk = batcher.submit("k", tasks(1, 2, 3, 4, 5, 6))
    a = batcher.submit("k", tasks(7), priority="interactive")
    b = batcher.submit("k", tasks(8), priority="interactive")
    rec.gate.set()
    for f in (blocker, bulk, a, b):
        f.result(5)
    assert rec.calls[0] == ("other", [100])
    assert rec.calls[1] == ("k", [7, 8])  # two interactive requests merged, ahead of the bulk
    assert [ids for _, ids in rec.calls[2:]] == [[1, 2, 3, 4], [5, 6]]


def test_a_full_queue_refuses_with_retry_after() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher = MicroBatcher(rec, batch_size=2, max_pending=2, retry_after=7)
    batcher.submit("k", tasks(1))
    batcher.submit("k", tasks(2))
    with pytest.raises(Overloaded) as err:
        batcher.submit("k", tasks(3))
    assert err.value.retry_after == 7
    rec.gate.set()
    time.sleep(0.2)
    assert batcher.submit("k", tasks(4)).result(5)[0].labels["k"] == ["4"]
    assert batcher.pending == 0


def test_a_failing_batch_fails_its_requests_and_the_worker_survives() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, batch_size=2, max_pending=4)
    with pytest.raises(ValueError, match="bad task"):
        batcher.submit("k", [{"id": 1, "boom": True}]).result(5)
    assert batcher.submit("k", tasks(2)).result(5)[0].labels["k"] == ["2"]


def test_interactive_is_served_before_queued_bulk_chunks_and_the_bulk_finishes() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, batch_size=2, max_pending=10)
    rec.gate.clear()
    blocker = batcher.submit("other", tasks(100))
    time.sleep(0.05)  # the worker now holds the blocker's chunk
    background = batcher.submit("k", tasks(90, 91), priority="background")
    bulk = batcher.submit("k", tasks(*range(1, 11)))  # five chunks of two
    interactive = batcher.submit("k", tasks(50), priority="interactive")
    rec.gate.set()
    assert [p.labels["k"][0] for p in bulk.result(5)] == [str(i) for i in range(1, 11)]  # all, in order
    for f in (blocker, background, interactive):
        f.result(5)
    order = [ids for _, ids in rec.calls]
    assert order[0] == [100]
    assert order[1] == [50]  # the interactive request waited for the running chunk only
    assert order[2:7] == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]
    assert order[7] == [90, 91]  # background work after the bulk


def test_an_interactive_request_cuts_in_between_the_chunks_of_a_running_bulk() -> None:
    batcher: MicroBatcher
    calls: list[list[int]] = []
    late: list = []

    def run(key, chunk, contexts):
        calls.append([t["id"] for t in chunk])
        if len(calls) == 2:  # Shift+Enter while the bulk's second chunk is in the model
            late.append(batcher.submit("k", tasks(999), priority="interactive"))
        return [TaskPrediction([], 0.5, {"k": [str(t["id"])]}, None, 0.0) for t in chunk]

    batcher = MicroBatcher(run, batch_size=3, max_pending=10)
    bulk = batcher.submit("k", tasks(*range(12)))
    assert len(bulk.result(5)) == 12
    assert late[0].result(5)[0].labels["k"] == ["999"]
    assert calls[2] == [999]  # right after the chunk that was running, before the bulk's third chunk
    assert sorted(i for ids in calls for i in ids if i != 999) == list(range(12))


def test_calls_run_in_the_worker_in_priority_order() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, batch_size=4, max_pending=10)
    rec.gate.clear()
    blocker = batcher.submit("other", tasks(100))
    time.sleep(0.05)
    call = batcher.call(lambda: rec.calls.append(("call", [threading.current_thread().name])) or "done")
    bulk = batcher.submit("k", tasks(1, 2), priority="bulk")
    rec.gate.set()
    assert call.result(5) == "done"
    bulk.result(5)
    blocker.result(5)
    # the background call ran in the model's worker, after the bulk chunk queued behind it
    assert rec.calls == [("other", [100]), ("k", [1, 2]), ("call", ["model-worker"])]
    failing = batcher.call(lambda: 1 / 0, priority="interactive")
    with pytest.raises(ZeroDivisionError):
        failing.result(5)
    assert batcher.submit("k", tasks(3)).result(5)[0].labels["k"] == ["3"]  # the worker lives on


def test_an_unknown_priority_is_a_programming_error_not_bad_input() -> None:
    batcher = MicroBatcher(Recorder(), batch_size=2, max_pending=2)
    with pytest.raises(ValueError, match="unknown priority 'urgent'") as raised:
        batcher.submit("k", tasks(1), priority="urgent")  # type: ignore[arg-type]
    assert not isinstance(raised.value, BadInput)  # BadInput becomes a 4xx blaming the request
    assert batcher.pending == 0
