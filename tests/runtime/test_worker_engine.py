"""The served engine: a model call from another thread (warming, the agent) queues behind requests."""

from __future__ import annotations

import threading
import time

from constraints.base import Query
from service.predictor import TaskPrediction
from service.runtime.queue import MicroBatcher
from service.runtime.worker_engine import WorkerEngine


def test_a_model_call_from_another_thread_waits_for_queued_requests(tiny_engine) -> None:
    order: list[str] = []
    gate = threading.Event()

    def run(key, chunk, contexts):
        gate.wait(10)
        order.append(f"batch {key}")
        return [TaskPrediction([], 0.5, {}, None, 0.0) for _ in chunk]

    batcher = MicroBatcher(run, batch_size=4, max_pending=10)
    engine = WorkerEngine(tiny_engine, lambda: batcher)
    query = Query("Say something.", "", "")
    expected = tiny_engine.generate([query], 3)
    running = batcher.submit("running", [{"id": 1}], priority="bulk")
    time.sleep(0.05)  # the worker holds that chunk
    result: list[list[str]] = []
    agent = threading.Thread(target=lambda: (result.append(engine.generate([query], 3)), order.append("generate")))
    agent.start()
    time.sleep(0.05)  # the agent's call is queued (background)
    asked = batcher.submit("shift+enter", [{"id": 2}], priority="interactive")
    gate.set()
    running.result(10)
    asked.result(10)
    agent.join(10)
    assert order == ["batch running", "batch shift+enter", "generate"]
    assert result == [expected]  # the same answer as the engine called directly
    assert engine.model_id == tiny_engine.model_id and engine.inner is tiny_engine
    # from the worker itself (a batch's decide) the call runs at once: no deadlock
    inside = batcher.call(lambda: engine.generate([query], 3), priority="interactive")
    assert inside.result(10) == expected
