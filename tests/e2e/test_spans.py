"""Spans end to end: a real Label Studio 1.23 project with `Labels` on `Text` plus `Choices`, labeled by a real
`prompter serve` on the embedded model. Pins the protocol: every predicted region sits on the characters it names,
with labels from the control's set, next to the intent; an annotator's spans reach Prompter as corrections."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from ls_api import LabelStudioAPI
from ls_server import LabelStudioServer
from prompter_server import PrompterServer

pytestmark = pytest.mark.e2e

SLOTS = ("rooms", "adults", "date_from", "date_to")
INTENTS = ("booking", "cancel_close_leave_freeze", "request_info")
CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Labels name="slots" toName="text">' + "".join(f'<Label value="{s}"/>' for s in SLOTS) + "</Labels>"
    '<Choices name="intent" toName="text">' + "".join(f'<Choice value="{c}"/>' for c in INTENTS) + "</Choices>"
    "</View>"
)
TEXTS = [
    "I'd like to book 2 rooms for 3 adults from the 5th of May until the 9th of May",
    "Can I cancel my reservation for 4 adults? 🙏",
    "Is breakfast included if we arrive on Friday & leave on Sunday?",
]


def test_span_predictions_sit_on_the_right_characters_and_corrections_arrive(
    label_studio: LabelStudioServer, ls_api: LabelStudioAPI, prompter_server: PrompterServer
) -> None:
    project = ls_api.create_project("prompter e2e spans", CONFIG)
    pid = project["id"]
    task_ids = ls_api.import_tasks(pid, [{"data": {"text": t}} for t in TEXTS])
    # a new project's first /setup warms its prompt, which on a busy 2-core machine outlasts Label Studio's 3 s check
    setup = {"project": str(pid), "schema": project["label_config"]}
    assert httpx.post(f"{prompter_server.url}/setup", json=setup, timeout=300).status_code == 200
    ls_api.connect_ml_backend(pid, prompter_server.url)

    ls_api.retrieve_predictions(pid, task_ids)
    regions = 0
    for task_id, text in zip(task_ids, TEXTS, strict=True):
        stored = ls_api.list_predictions(task_id)
        assert len(stored) == 1, f"task {task_id}: {stored}; LS log: {label_studio.log_errors()}"
        result: list[dict[str, Any]] = stored[0]["result"]
        intents = [r for r in result if r["from_name"] == "intent"]
        assert len(intents) == 1 and set(intents[0]["value"]["choices"]) <= set(INTENTS), result
        spans = [r for r in result if r["from_name"] == "slots"]
        seen = set()
        for r in spans:
            v = r["value"]
            assert r["type"] == "labels" and r["to_name"] == "text", r
            assert text[v["start"] : v["end"]] == v["text"], f"region {v} is not on its characters in {text!r}"
            assert len(v["labels"]) == 1 and v["labels"][0] in SLOTS, v
            assert (v["start"], v["end"]) not in seen, f"duplicate span {v}"
            seen.add((v["start"], v["end"]))
        regions += len(spans)
        print(f"\n[e2e] {text!r}: {[(r['value']['text'], r['value']['labels'][0]) for r in spans]}")
    assert regions > 0, "the embedded model proposed no span on any of the tasks"

    text = TEXTS[0]
    gold = [("2", "rooms", text.index("2 rooms")), ("3", "adults", text.index("3 adults"))]
    gold += [("5th of May", "date_from", text.index("5th of May")), ("9th of May", "date_to", text.index("9th of May"))]
    result = [
        {
            "from_name": "slots", "to_name": "text", "type": "labels",
            "value": {"start": at, "end": at + len(phrase), "text": phrase, "labels": [label]},
        }
        for phrase, label, at in gold
    ] + [{"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": ["booking"]}}]  # fmt: skip
    ls_api.create_annotation(task_ids[0], result)
    deadline = time.monotonic() + 300
    activity: dict[str, Any] = {}
    while time.monotonic() < deadline:
        activity = httpx.get(f"{prompter_server.url}/projects/{pid}/activity", timeout=60).json()
        if activity.get("corrections", 0) >= 2:
            break
        time.sleep(2)
    assert activity.get("annotations") == 1, activity
    assert activity.get("corrections", 0) >= 2, f"the spans and the intent should both be corrections: {activity}"
