"""The service's model queue end to end on the tiny engine: what /predict and the agent submit, in what order."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.labeling import parse_config
from service.predictor import Prompt, TaskDataError
from service.runtime import host

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="intent" toName="text" choice="single">
    <Choice value="loan"/><Choice value="balance"/><Choice value="fraud"/>
  </Choices>
</View>"""


def _tasks(*ids: int) -> list[dict]:
    return [{"id": i, "data": {"text": f"customer message number {i}"}} for i in ids]


def test_interactive_then_bulk_then_the_agents_work(tiny_engine) -> None:
    host.set_engine(tiny_engine)
    engine = host.ready_engine()
    schema = parse_config(CONFIG)
    prompt = Prompt("Classify the message.")
    finished: list[str] = []  # appended by the worker as each request completes
    gate = threading.Event()
    held = host.batcher().call(lambda: gate.wait(10), priority="interactive")  # the chunk "already running"

    def queued(name: str, future):
        future.add_done_callback(lambda f: finished.append(name if f.exception() is None else f"{name} failed"))
        return future

    agent = queued("agent", host.submit(engine, schema, _tasks(1, 2), prompt))  # the agent's: background by default
    bulk = queued("bulk", host.submit(engine, schema, _tasks(*range(10, 50)), prompt, priority="bulk"))  # 3 chunks
    shift_enter = queued("interactive", host.submit(engine, schema, _tasks(99), prompt, priority="interactive"))
    gate.set()
    held.result(10)
    results = [f.result(30) for f in (shift_enter, bulk, agent)]
    assert finished == ["interactive", "bulk", "agent"]
    assert [len(r) for r in results] == [1, 40, 2]  # the bulk finished, nothing dropped
    assert all(p.labels["intent"][0] in {"loan", "balance", "fraud"} for r in results for p in r)


def test_predictions_are_prepared_in_the_worker_and_a_bad_task_fails_before_any_model_work(tiny_engine) -> None:
    host.set_engine(tiny_engine)
    engine = host.ready_engine()
    schema = parse_config(CONFIG)
    prompt = Prompt("Classify the message.")
    (one,) = asyncio.run(host.run_predictions(engine, schema, _tasks(7), prompt, interactive=True))
    assert one.labels["intent"][0] in {"loan", "balance", "fraud"} and one.evidence["intent"].shape[0] == 3
    pending = host.batcher().pending
    with pytest.raises(TaskDataError, match="has no data key 'text'"):  # 422, before anything was queued
        asyncio.run(host.run_predictions(engine, schema, [{"id": 8, "data": {"other": "x"}}], prompt))
    assert host.batcher().pending == pending
