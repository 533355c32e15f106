"""Smoke test of the whole loop: a real Label Studio asks a real `prompter serve` for labels.

Pins the protocol, not the model's accuracy: the task gets one stored prediction whose intents come
from the project's label set, interactive preannotation answers, and neither server logs an error.
One task only: Label Studio gives /predict 100 s (ML_TIMEOUT_PREDICT) and a CPU-only machine is slow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from dstc11 import prompt_context
from ls_api import LabelStudioAPI
from ls_server import LabelStudioServer
from prompter_server import PrompterServer

pytestmark = pytest.mark.e2e


def _by_name(result: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["from_name"]: item for item in result}


def test_label_studio_stores_prompter_predictions(
    label_studio: LabelStudioServer,
    ls_api: LabelStudioAPI,
    prompt_project: Callable[..., dict[str, Any]],
    prompter_server: PrompterServer,
) -> None:
    made = prompt_project(n_tasks=1, title="prompter smoke")
    project, task_ids, labels = made["project"], made["task_ids"], set(made["labels"])

    ml = ls_api.connect_ml_backend(project["id"], prompter_server.url)
    assert ml["model_version"], f"Prompter's /setup named no model version: {ml}"

    started = time.monotonic()
    ls_api.retrieve_predictions(project["id"], task_ids)
    print(f"\n[e2e] retrieve predictions for {len(task_ids)} tasks: {time.monotonic() - started:.1f} s")
    for task_id in task_ids:
        stored = ls_api.list_predictions(task_id)
        assert len(stored) == 1, (
            f"task {task_id}: expected one prediction, LS stored {stored}; LS log: {label_studio.log_errors()}"
        )
        intent = _by_name(stored[0]["result"]).get("intent")
        assert intent is not None, f"task {task_id}: no intent in {stored[0]['result']}"
        assert intent["value"]["choices"], f"task {task_id}: empty intent choices"
        assert set(intent["value"]["choices"]) <= labels, intent

    started = time.monotonic()
    answer = ls_api.interactive_annotating(ml["id"], task_ids[0], prompt_context("What does the customer want?"))
    print(f"[e2e] interactive preannotation: {time.monotonic() - started:.1f} s")
    intent = _by_name(answer["data"]["result"]).get("intent")
    assert intent is not None and set(intent["value"]["choices"]) <= labels, answer

    ls_api.create_annotation(
        task_ids[0],
        [
            {"from_name": "prompt", "to_name": "chat", "type": "textarea",
             "value": {"text": ["What does the customer want?"]}},
            {"from_name": "intent", "to_name": "chat", "type": "choices",
             "value": {"choices": [made["utterances"][0].label]}},
        ],
    )  # fmt: skip
