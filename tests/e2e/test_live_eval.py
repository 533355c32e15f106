"""Live evaluation end to end: a real Label Studio 1.23 drives a real `prompter serve` on the embedded model.

30 dialogues are annotated in Label Studio (their annotations and task data reach Prompter by the webhooks), an
annotator types a new prompt with Shift+Enter, and its evaluation on the 30 annotated tasks against the active
prompt is stored and listed by Prompter's API; accepting it changes the `model_version` Label Studio stores.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from dstc11 import dialogue_task, intents, prompt_centric_config, prompt_context
from ls_api import LabelStudioAPI
from prompter_server import PrompterServer

pytestmark = pytest.mark.e2e

N_TASKS = 30
TYPED = "Which insurance requests does the customer make? Pick every one that applies."
WAIT_S = 1200


def _say(message: str) -> None:
    print(f"\n[e2e] {message}", flush=True)


def _get(server: PrompterServer, path: str) -> Any:
    response = httpx.get(f"{server.url}{path}", timeout=60)
    assert response.status_code == 200, f"GET {path} -> {response.status_code}: {response.text[:2000]}"
    return response.json()


def _until(what: str, check, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_a_typed_prompt_is_measured_on_the_annotated_tasks_and_accepted(
    ls_api: LabelStudioAPI, prompter_server: PrompterServer, dstc11_utterances: list
) -> None:
    labels = intents(dstc11_utterances)
    by_intent = {label: [u for u in dstc11_utterances if u.label == label] for label in labels}
    chosen = [by_intent[labels[i % len(labels)]][i // len(labels)] for i in range(N_TASKS)]  # every intent, then more
    project = ls_api.create_project("prompter e2e live evaluation", prompt_centric_config(labels))
    pid = project["id"]
    task_ids = ls_api.import_tasks(pid, [dialogue_task(u) for u in chosen])
    # the project's first /setup warms its prompt, which on a busy 2-core machine outlasts Label Studio's 3 s check
    setup = {"project": str(pid), "schema": project["label_config"]}
    assert httpx.post(f"{prompter_server.url}/setup", json=setup, timeout=300).status_code == 200
    ml = ls_api.connect_ml_backend(pid, prompter_server.url, is_interactive=True)

    started = time.monotonic()
    for task_id, utterance in zip(task_ids, chosen, strict=True):
        result = [
            {"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": [utterance.label]}}
        ]
        ls_api.create_annotation(task_id, result)
    _until(
        "30 annotations at Prompter",
        lambda: _get(prompter_server, f"/projects/{pid}/activity")["annotations"] == N_TASKS,
    )
    _say(f"{N_TASKS} annotations received by webhook: {time.monotonic() - started:.1f} s")

    started = time.monotonic()
    answer = ls_api.interactive_annotating(ml["id"], task_ids[0], prompt_context(TYPED))  # Shift+Enter
    typed_id = int(answer["data"]["model_version"].split("@")[0].removeprefix("prompt-"))
    versions = {v["id"]: v for v in _get(prompter_server, f"/projects/{pid}/prompts")}
    assert versions[typed_id]["text"] == TYPED and versions[typed_id]["source"] == "annotator"
    active_id = next(v["id"] for v in versions.values() if v["is_active"])

    def measured() -> dict | None:
        rows = _get(prompter_server, f"/projects/{pid}/prompts/{typed_id}/evaluations")
        return next((e for e in rows if e["status"] == "ok" and e["tasks"] == N_TASKS), None)

    evaluation = _until("the typed prompt's evaluation", measured)
    _say(
        f"typed prompt -> stored evaluation on {N_TASKS} tasks: {time.monotonic() - started:.1f} s "
        f"({100 * evaluation['accuracy']:.1f}% vs the active prompt's {100 * evaluation['compared_accuracy']:.1f}%, "
        f"{len(evaluation['fixes'])} fixed, {len(evaluation['breaks'])} broken, p = {evaluation['p_value']:.3g})"
    )
    assert evaluation["trigger"] == "typed" and evaluation["compared_with_id"] == active_id
    assert set(evaluation["fixes"]) | set(evaluation["breaks"]) <= set(task_ids)
    # multiple choice: pairs are tasks whose F1 changed, so every task whose exact match changed is among them
    changed = len(evaluation["fixes"]) + len(evaluation["breaks"])
    assert abs(evaluation["accuracy"] - evaluation["compared_accuracy"]) <= changed / N_TASKS + 1e-9
    outcomes = evaluation.get("outcomes") or {}
    assert all(float(outcomes[str(t)]) > 0 for t in evaluation["fixes"] if str(t) in outcomes)
    assert all(float(outcomes[str(t)]) < 1 for t in evaluation["breaks"] if str(t) in outcomes)
    history = {v["id"]: v for v in _get(prompter_server, f"/projects/{pid}/prompts")}
    assert history[typed_id]["evaluation"]["id"] == evaluation["id"]  # what the review page's history shows
    assert _get(prompter_server, "/metrics")["evaluations"]["ok"] >= 2

    # a later Shift+Enter with the same prompt says how it measured against the active one
    again = ls_api.interactive_annotating(ml["id"], task_ids[1], prompt_context(TYPED))
    said = "\n".join(t for r in again["data"]["result"] if r.get("type") == "textarea" for t in r["value"]["text"])
    _say(f"the response says:\n{said}")
    assert f"this prompt: {100 * evaluation['accuracy']:.0f}% on {N_TASKS} annotated tasks" in said
    assert f"active prompt: {100 * evaluation['compared_accuracy']:.0f}%" in said

    accepted = httpx.post(f"{prompter_server.url}/projects/{pid}/prompts/{typed_id}/accept", json={}, timeout=60)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["model_version"].startswith(f"prompt-{typed_id}@")
    ls_api.retrieve_predictions(pid, task_ids[1:2])
    stored = [p["model_version"] for p in ls_api.list_predictions(task_ids[1])]
    assert any(v.startswith(f"prompt-{typed_id}@") for v in stored), stored  # what Label Studio sees now
