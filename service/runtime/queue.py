"""A bounded queue in front of the model: requests are cut into chunks, served by priority (interactive, then
bulk, then background), and chunks that share a prompt, label config and priority are merged into one batch.

One worker thread runs the model (torch already uses every core, and a second thread running a forward only
slows both). A chunk is at most ``batch_size`` tasks, so an interactive request that arrives while a 500-task
"Retrieve predictions" runs waits for the one chunk in the worker, then cuts in before the bulk's next chunk;
the bulk still finishes and nothing is dropped. Other model work (warming, the agent's own model calls) runs in
the same worker through ``call``. A full queue raises ``Overloaded`` (503 with Retry-After) instead of piling up
requests.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from constraints.errors import Unavailable
from service.predictor import TaskPrediction

log = logging.getLogger(__name__)

Priority = Literal["interactive", "bulk", "background"]
RANK: dict[str, int] = {"interactive": 0, "bulk": 1, "background": 2}


class Overloaded(Unavailable):
    """Too much work is queued for the model; the client should retry after ``retry_after`` seconds."""

    retry_after = 2


# (key, tasks, per-task contexts) -> predictions for those tasks; key groups chunks that may share a batch
RunBatch = Callable[[Any, list[dict], list[Any]], list[TaskPrediction]]


def rank(priority: str) -> int:
    """The queue order of a priority name (lower first). Names come from the service's own code, never from a
    request, so an unknown one is a bug: ValueError (a 500), not a 4xx blaming the caller."""
    try:
        return RANK[priority]
    except KeyError:
        raise ValueError(f"unknown priority {priority!r}; use one of {sorted(RANK, key=RANK.get)}") from None


@dataclass
class _Request:
    future: Future
    results: list[TaskPrediction | None]
    remaining: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliver(self, offset: int, preds: list[TaskPrediction]) -> None:
        with self.lock:
            self.results[offset : offset + len(preds)] = preds
            self.remaining -= 1
            done = self.remaining == 0
        if done and not self.future.done():
            self.future.set_result(self.results)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass(order=True)
class _Chunk:
    priority: int
    seq: int
    key: Any = field(compare=False)
    tasks: list[dict] = field(compare=False)
    contexts: list[Any] = field(compare=False)
    request: _Request | None = field(compare=False)
    offset: int = field(compare=False)
    call: Callable[[], Any] | None = field(default=None, compare=False)  # other model work, run alone
    future: Future | None = field(default=None, compare=False)  # the call's result


class MicroBatcher:
    def __init__(self, run: RunBatch, batch_size: int, max_pending: int, retry_after: int = 2) -> None:
        self.run = run
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.retry_after = retry_after
        self._queue: queue.PriorityQueue[_Chunk] = queue.PriorityQueue()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._seq = itertools.count()
        self._worker = threading.Thread(target=self._loop, name="model-worker", daemon=True)
        self._worker.start()

    @property
    def pending(self) -> int:
        return self._pending

    def in_worker(self) -> bool:
        """True on the worker thread itself (where model calls run directly)."""
        return threading.current_thread() is self._worker

    def submit(
        self, key: Any, tasks: list[dict], contexts: list[Any] | None = None, priority: Priority = "bulk"
    ) -> Future:
        """Queue one request; its future resolves to one prediction per task, in order."""
        order = rank(priority)
        with self._pending_lock:
            if self._pending >= self.max_pending:
                raise Overloaded(f"{self._pending} requests are queued for the model; retry shortly", self.retry_after)
            self._pending += 1
        future: Future = Future()
        future.add_done_callback(lambda _: self._release())
        if not tasks:
            future.set_result([])
            return future
        chunks = range(0, len(tasks), self.batch_size)
        request = _Request(future, [None] * len(tasks), len(chunks))
        for start in chunks:
            part = tasks[start : start + self.batch_size]
            ctx = contexts[start : start + self.batch_size] if contexts is not None else [None] * len(part)
            self._queue.put(_Chunk(order, next(self._seq), key, part, ctx, request, start))
        return future

    def call(self, work: Callable[[], Any], priority: Priority = "background") -> Future:
        """Run ``work()`` in the worker, in queue order (never refused: its caller is the service itself);
        a Future of its result. On the worker thread it runs at once (a call from inside a batch)."""
        future: Future = Future()
        if self.in_worker():
            _run_call(work, future)
            return future
        self._queue.put(_Chunk(rank(priority), next(self._seq), None, [], [], None, 0, work, future))
        return future

    async def predict(
        self, key: Any, tasks: list[dict], contexts: list[Any] | None = None, priority: Priority = "bulk"
    ) -> list[TaskPrediction]:
        return await asyncio.wrap_future(self.submit(key, tasks, contexts, priority))

    def _release(self) -> None:
        with self._pending_lock:
            self._pending -= 1

    def _take_batch(self) -> list[_Chunk]:
        """The most urgent chunk plus queued chunks of the same key and priority, up to ``batch_size`` tasks."""
        first = self._queue.get()
        if first.call is not None:
            return [first]
        batch, size, held = [first], len(first.tasks), []
        while size < self.batch_size:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if (
                nxt.call is None
                and nxt.key == first.key
                and nxt.priority == first.priority
                and size + len(nxt.tasks) <= self.batch_size
            ):
                batch.append(nxt)
                size += len(nxt.tasks)
            else:
                held.append(nxt)
            if nxt.priority > first.priority:  # the queue is ordered: nothing after it can join this batch
                break
        for chunk in held:
            self._queue.put(chunk)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch[0].call is not None:
                _run_call(batch[0].call, batch[0].future)
                continue
            live = [c for c in batch if not c.request.future.done()]
            if not live:
                continue
            tasks = [t for c in live for t in c.tasks]
            contexts = [x for c in live for x in c.contexts]
            try:
                preds = self.run(live[0].key, tasks, contexts)
            except BaseException as exc:  # delivered to the waiting requests, never kills the worker
                if not isinstance(exc, ValueError):
                    log.exception("a model batch failed")
                for c in live:
                    c.request.fail(exc)
                continue
            pos = 0
            for c in live:
                c.request.deliver(c.offset, preds[pos : pos + len(c.tasks)])
                pos += len(c.tasks)


def _run_call(work: Callable[[], Any], future: Future | None) -> None:
    try:
        result = work()
    except BaseException as exc:  # the caller gets it; the worker lives on
        if future is not None:
            future.set_exception(exc)
        return
    if future is not None:
        future.set_result(result)
