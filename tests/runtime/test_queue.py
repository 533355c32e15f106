"""The model queue: order, merging of compatible chunks, priority, bounds and failures."""

from __future__ import annotations

import threading
import time

import pytest

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
    a = batcher.submit("k", tasks(7), interactive=True)
    b = batcher.submit("k", tasks(8), interactive=True)
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
