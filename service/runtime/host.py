"""The process-wide model engine: loaded once in a background thread, never rebuilt per request."""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from starlette.concurrency import run_in_threadpool

from constraints.base import Engine, EngineNotReady
from service import budget, embeddings, explain
from service.labeling import ProjectSchema
from service.predictor import Prompt, TaskContext, TaskPrediction, check_tasks, decide, prepare
from service.runtime import events
from service.runtime.queue import MicroBatcher, Priority
from service.runtime.warming import warm_in_background, warm_known_projects
from service.runtime.worker_engine import WorkerEngine
from service.settings import settings

log = logging.getLogger(__name__)

ModelState = Literal["loading", "ready", "error"]


@dataclass(frozen=True)
class EngineState:
    state: ModelState  # "loading" also means "not loaded yet": nothing is served until "ready"
    error: str | None = None
    model_id: str | None = None
    load_seconds: float | None = None


_lock = threading.Lock()
_engine: Engine | None = None
_state = EngineState("loading")
_thread: threading.Thread | None = None


def _default_loader() -> Engine:
    return importlib.import_module("constraints.engines").load_engine(settings)


def _load(loader: Callable[[], Engine]) -> None:
    global _engine, _state
    started = time.perf_counter()
    try:
        engine = loader()
    except BaseException as exc:  # the model must never take the service down with it
        log.exception("the model failed to load")
        with _lock:
            _state = EngineState("error", error=f"{type(exc).__name__}: {exc}")
        return
    if settings.warmup:  # the sentence embedder's load holds the GIL for seconds: pay it before "ready"
        try:
            embeddings.embed(["warm up"])
        except Exception:  # label knowledge then fails per request, with its reason; the model still serves
            log.warning("could not load the sentence embedder", exc_info=True)
    engine = WorkerEngine(engine, batcher)  # wrapped before warming: its caches are keyed by the engine served
    if settings.warmup and response_tokens() and hasattr(engine.inner, "warm_free_text"):
        _warm_free_text(engine.warm_free_text)
    if settings.warm_projects:  # before "ready": a known project's first request pays no cold cache
        warmed = warm_known_projects(engine, settings.warm_projects)
        log.info("%d known projects warmed", warmed)
    seconds = time.perf_counter() - started
    log.info("model %s ready in %.1f s", engine.model_id, seconds)
    with _lock:
        _engine = engine
        _state = EngineState("ready", model_id=engine.model_id, load_seconds=seconds)
    events.emit_engine_ready()


def _warm_free_text(warm: Callable[[], float]) -> None:
    """The free-text generator's build and first (compiling) call, before "ready": the build holds the GIL for
    seconds, which after "ready" made Label Studio's 3 s /setup check time out."""
    try:
        log.info("free-text generator warmed in %.1f s", warm())
    except Exception:  # the labels are served either way; the first interactive request retries the build
        log.warning("could not warm the free-text generator", exc_info=True)


def start_loading(loader: Callable[[], Engine] | None = None) -> threading.Thread:
    """Load the engine in a daemon thread (the one ``settings.engine`` names, by default)."""
    global _thread, _state
    with _lock:
        if _thread is not None and _thread.is_alive():
            return _thread
        _state = EngineState("loading")
        embeddings.run_encodes_with(_encode_in_worker)
        _thread = threading.Thread(target=_load, args=(loader or _default_loader,), name="model-loader")
        _thread.daemon = True
        _thread.start()
        return _thread


def set_engine(engine: Engine | None) -> None:
    """Install a ready engine (tests, embedding); None goes back to "loading"."""
    global _engine, _state
    if engine is not None and not isinstance(engine, WorkerEngine):
        engine = WorkerEngine(engine, batcher)
        embeddings.run_encodes_with(_encode_in_worker)
    with _lock:
        _engine = engine
        _state = EngineState("ready", model_id=engine.model_id) if engine else EngineState("loading")


def state() -> EngineState:
    return _state


def ready_engine() -> Engine:
    """The ready engine (its model calls from other threads queued behind requests, ``WorkerEngine``);
    EngineNotReady (with the reason) while it loads or after it failed."""
    engine, current = _engine, _state
    if engine is not None:
        return engine
    if current.state == "error":
        raise EngineNotReady(f"the model failed to load: {current.error}", retry_after=0)  # retrying won't help
    raise EngineNotReady("the model is still loading; retry in a few seconds")


def warm_soon(project_id: str) -> None:
    """Warm a project's active prompt in the background once the engine is ready (never blocks the caller)."""
    engine = _engine
    if engine is None or not settings.warm_projects:
        return
    warm_in_background(engine, project_id)


EMBEDDED_MODEL_ID = "gemma-3-270m"  # what constraints.loading names the embedded model (a test pins it)


def expected_model_id() -> str:
    """The id the configured model will have once loaded, known without importing torch."""
    if settings.engine == "vllm" and settings.vllm_model:
        return settings.vllm_model
    if settings.model == "embedded":
        return EMBEDDED_MODEL_ID
    return Path(settings.model).name or settings.model


def model_id() -> str:
    """The engine's model id once loaded; before that the id the configured model will have."""
    engine = _engine
    return engine.model_id if engine is not None else expected_model_id()


_batcher: MicroBatcher | None = None
_batcher_lock = threading.Lock()


def batcher() -> MicroBatcher:
    """The process-wide model queue (created on first use)."""
    global _batcher
    with _batcher_lock:
        if _batcher is None:
            _batcher = MicroBatcher(_run_batch, settings.batch_size, settings.queue_size)
        return _batcher


def _encode_in_worker(work: Callable[[], Any]) -> Any:
    """The sentence embedder's encodes run in the model worker: at once from a batch, else queued (background)."""
    queue = batcher()
    return work() if queue.in_worker() else queue.call(work, "background").result()


def batch_key(engine: Engine, schema: ProjectSchema, prompt: Prompt, with_response: bool) -> tuple:
    """Chunks with equal keys may share a forward pass; the worker decides them under the key's prompt."""
    return (engine, schema, prompt, with_response)


def response_tokens() -> int:
    """How many tokens of free text an answer with a response gets: 0 unless the response mode generates."""
    return settings.response_max_tokens if explain.generates() else 0


def _run_batch(key: tuple, tasks: list[dict], contexts: list[TaskContext | None]) -> list[TaskPrediction]:
    """In the worker: prepare the tasks queued unprepared (the sentence embedder runs here, one chunk at a time,
    not in a request thread beside the forward), then decide the batch."""
    engine, schema, prompt, with_response = key
    missing = [i for i, c in enumerate(contexts) if c is None]
    if missing:
        fresh = prepare(engine, schema, [tasks[i] for i in missing], prompt, None, settings.max_text_chars)
        contexts = list(contexts)
        for i, context in zip(missing, fresh, strict=True):
            contexts[i] = context
    tokens = response_tokens() if with_response else 0
    started = time.perf_counter()
    predictions = decide(engine, schema, tasks, prompt, contexts, response_max_tokens=tokens)
    seconds = time.perf_counter() - started
    text_tokens = budget.text_tokens(engine, schema, tasks)
    budget.prefill_rate(engine).observe(budget.cost_tokens(schema, text_tokens, bool(tokens), tokens), seconds)
    return predictions


def submit(
    engine: Engine,
    schema: ProjectSchema,
    tasks: list[Any],
    prompt: Prompt,
    contexts: list[TaskContext] | None = None,
    priority: Priority = "background",
    with_response: bool = False,
):
    """Queue tasks; a Future of their predictions. Overloaded when full.

    ``contexts``: ``predictor.prepare``'s, when the caller prepared them (the agent, with its leave-out rules);
    None: prepared in the worker. ``priority``: "background" unless told, the service's own work (corrections,
    refinements, evaluations); ``/predict`` passes "interactive" or "bulk".
    """
    return batcher().submit(batch_key(engine, schema, prompt, with_response), tasks, contexts, priority)


async def run_predictions(
    engine: Engine,
    schema: ProjectSchema,
    tasks: list[Any],
    prompt: Prompt,
    interactive: bool = False,
    priority: Priority | None = None,
) -> list[TaskPrediction]:
    """``/predict``'s path through the queue: the tasks checked in a worker thread (a bad task fails only its
    own request, before any model work), then queued and prepared chunk by chunk in the model worker.

    ``priority``: "interactive" for a Shift+Enter (or a single task), else "bulk", unless given.
    The free-text answer costs a decode step per token, so bulk predictions skip it unless configured.
    """
    await run_in_threadpool(check_tasks, schema, tasks, settings.max_text_chars)
    interactive = interactive or len(tasks) == 1
    priority = priority or ("interactive" if interactive else "bulk")
    future = submit(engine, schema, tasks, prompt, None, priority, interactive or settings.response_in_batch)
    return await asyncio.wrap_future(future)
