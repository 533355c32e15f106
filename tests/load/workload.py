"""The load test's requests, shaped like Label Studio 1.23's (tests/e2e/fixtures/ls_requests.json):
interactive /predict with the annotator's prompt in ``params.context``, one bulk "Retrieve predictions"
/predict, and ANNOTATION_CREATED webhooks, all on DSTC11 insurance customer turns (22 intents)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from tests.integration.conftest import DSTC11

FIXTURES = Path(__file__).resolve().parents[1] / "e2e" / "fixtures" / "ls_requests.json"
PROJECT = "1.1700000000"  # Label Studio sends "<id>.<created timestamp>"; Prompter's project id is "1"
PROJECT_ID = 1
# Annotators' Shift+Enter prompts: a few wordings, so requests with the same prompt can share a batch
PROMPTS = (
    "Classify the customer's intent.",
    "What does the customer want? Pick one intent.",
    "Which insurance request is this?",
    "Choose the intent of this message.",
    "Label the customer's request with one intent.",
)


@cache
def utterances() -> list[dict[str, str]]:
    return [json.loads(line) for line in DSTC11.read_text().splitlines() if line.strip()]


@cache
def intents() -> tuple[str, ...]:
    return tuple(sorted({row["label"] for row in utterances()}))


@cache
def _captured() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text())


def label_config() -> str:
    """Text + single Choices over the 22 intents, with the prompt TextArea of the prompt-centric config."""
    choices = "\n".join(f'    <Choice value="{label}"/>' for label in intents())
    return f"""<View>
  <Text name="text" value="$text"/>
  <TextArea name="prompt" toName="text" rows="4" editable="true" maxSubmissions="1" showSubmitButton="false"/>
  <Choices name="intent" toName="text" choice="single">
{choices}
  </Choices>
</View>"""


def _fixture(name: str) -> dict[str, Any]:
    return copy.deepcopy(_captured()[name]["body"])


def setup_body() -> dict[str, Any]:
    body = _fixture("setup")
    body.update(project=PROJECT, schema=label_config())
    return body


def _task(template: dict[str, Any], index: int) -> dict[str, Any]:
    """Label Studio's task object for utterance ``index`` (task id ``index + 1``)."""
    task = copy.deepcopy(template)
    row = utterances()[index]
    task.update(id=index + 1, inner_id=index + 1, data={"text": row["text"], "utterance_id": row["id"]})
    return task


def batch_body(indices: range) -> dict[str, Any]:
    """Data Manager → Retrieve Predictions: one /predict carrying every selected task, no context."""
    body = _fixture("predict_batch")
    template = body["tasks"][0]
    body.update(project=PROJECT, label_config=label_config(), tasks=[_task(template, i) for i in indices])
    return body


def interactive_body(index: int, prompt: str) -> dict[str, Any]:
    """Shift+Enter in the prompt TextArea: one task, the typed prompt as ``params.context.result``."""
    body = _fixture("predict_interactive")
    template = body["tasks"][0]
    template.update(predictions=[], total_predictions=0)
    body.update(project=PROJECT, label_config=label_config(), tasks=[_task(template, index)])
    body["params"]["context"] = {
        "result": [{"from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": [prompt]}}]
    }
    return body


def annotation_body(annotation_id: int, index: int) -> dict[str, Any]:
    """ANNOTATION_CREATED for utterance ``index``, labeled with its gold intent under the first prompt."""
    body = _fixture("webhook_annotation_created")
    row = utterances()[index]
    body["annotation"].update(
        id=annotation_id,
        task=index + 1,
        project=PROJECT_ID,
        unique_id=f"load-{annotation_id}",
        result=[
            {"from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": [PROMPTS[0]]}},
            {"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": [row["label"]]}},
        ],
    )
    body["project"].update(id=PROJECT_ID, label_config=label_config())
    body["task"] = _task(body["task"], index)
    return body
