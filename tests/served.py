"""Helpers for tests against real `prompter serve` processes: the tiny model saved to a folder, the servers'
environment, Label Studio's webhook bodies, concurrent posting, and reading the shared database directly."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from service.demo.processes import PrompterServer
from tests.tiny_model import tiny_model

LABELS = ("loan", "card", "credit card")
PROMPT = "Classify the customer's request."
LABEL_CONFIG = f"""<View>
  <Text name="text" value="$text"/>
  <TextArea name="prompt" toName="text" rows="2" editable="true" maxSubmissions="1"/>
  <Choices name="intent" toName="text" choice="single">
    {"".join(f'<Choice value="{label}"/>' for label in LABELS)}
  </Choices>
</View>"""


def save_tiny_model(folder: Path) -> Path:
    """The tiny random Gemma 3 of tests/tiny_model.py as a Hugging Face folder, for PROMPTER_MODEL."""
    model, tokenizer = tiny_model()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def server(workdir: Path, model_dir: Path, database_url: str, **extra: str) -> PrompterServer:
    """A `prompter serve` (not started) on the tiny model, one torch thread, the given database."""
    env = {
        "PROMPTER_MODEL": str(model_dir),
        "PROMPTER_THREADS": "1",
        "PROMPTER_HOME": str(workdir / "home"),
        "PROMPTER_DATABASE_URL": database_url,
        "TRANSFORMERS_OFFLINE": "1",
        **extra,
    }
    return PrompterServer(workdir, ready_timeout=120, extra_env=env)


def task_text(task_id: int) -> str:
    return f"customer {task_id}: I want to cancel my card number {task_id} or borrow money"


def annotation_event(
    annotation_id: int, task_id: int, label: str, action: str = "ANNOTATION_CREATED", project_id: int = 1
) -> dict[str, Any]:
    """An ANNOTATION_CREATED / ANNOTATION_UPDATED body as Label Studio 1.23 sends it (the fields Prompter reads)."""
    stamp = "2025-01-01T00:00:00.000000Z" if action == "ANNOTATION_CREATED" else "2025-01-02T00:00:00.000000Z"
    return {
        "action": action,
        "annotation": {
            "id": annotation_id,
            "task": task_id,
            "project": project_id,
            "completed_by": 1,
            "created_at": "2025-01-01T00:00:00.000000Z",
            "updated_at": stamp,
            "lead_time": 3.5,
            "result": [
                {"from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": [PROMPT]}},
                {"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": [label]}},
            ],
        },
        "task": {"id": task_id, "project": project_id, "data": {"text": task_text(task_id)}},
        "project": {"id": project_id, "title": "replicas", "label_config": LABEL_CONFIG},
    }


Outcome = int | str  # an HTTP status, or the name of the transport error


def post_concurrently(
    requests: Sequence[tuple[str, dict[str, Any] | None]], timeout: float = 60.0
) -> list[tuple[Outcome, dict[str, Any] | None]]:
    """POST every (url, body) from its own thread, released together by a barrier; (status, json) in order."""
    barrier = threading.Barrier(len(requests))
    results: list[tuple[Outcome, dict[str, Any] | None]] = [("not sent", None)] * len(requests)

    def send(i: int, url: str, body: dict[str, Any] | None) -> None:
        with httpx.Client(timeout=timeout) as client:
            barrier.wait()
            try:
                response = client.post(url, json=body)
            except httpx.HTTPError as exc:
                results[i] = (type(exc).__name__, None)
                return
            try:
                results[i] = (response.status_code, response.json())
            except ValueError:
                results[i] = (response.status_code, None)

    threads = [threading.Thread(target=send, args=(i, url, body)) for i, (url, body) in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def run_in_threads(work: Sequence[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=job) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@contextmanager
def database(url: str) -> Iterator[sa.Connection]:
    """A plain connection to the servers' database (no pool kept), to count what they stored."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with database(url) as connection:
        return [tuple(row) for row in connection.execute(sa.text(sql), params)]
