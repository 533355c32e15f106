"""The prompt-centric workflow end to end: a real Label Studio 1.23 drives a real `prompter serve`.

Stages share one project (module-scoped fixtures, run in order): connect -> interactive prompt ->
"Retrieve predictions" -> corrections through webhooks -> refinement -> accepted proposal -> new
predictions. A second project pins single choice on a `Text` object (with capitalised tag names).
Task counts stay small: every /predict runs the embedded model on a shared 2-core machine.

What a stage's fixture logs is checked by the next test that uses the servers (conftest's
`_fail_on_backend_errors`), so a 5xx that Label Studio reports as success fails the run.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from dstc11 import Utterance, dialogue_task, intents, one_per_intent, prompt_centric_config, prompt_context
from ls_api import LabelStudioAPI
from ls_server import LabelStudioServer
from prompter_server import PrompterServer
from sqlmodel import Session, create_engine, select

from service.store.models import Annotation

pytestmark = pytest.mark.e2e

N_TASKS = 4
MODEL_VERSION = re.compile(r"^prompt-(\d+)@\S+$")
PROMPT = "Which intents does the customer express? Pick every one that applies."


def _by_name(result: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["from_name"]: item for item in result}


def _say(message: str) -> None:
    print(f"\n[e2e] {message}", flush=True)


@dataclass
class Workflow:
    """What the stages built so far, shared by the tests of this module."""

    project: dict[str, Any]
    task_ids: list[int]
    utterances: list[Utterance]
    labels: list[str]
    ml: dict[str, Any]
    connect_log: str
    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    annotations: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def project_id(self) -> int:
        return self.project["id"]


@pytest.fixture(scope="module")
def workflow(
    label_studio: LabelStudioServer, ls_api: LabelStudioAPI, prompter_server: PrompterServer, dstc11_utterances: list
) -> Workflow:
    """A prompt-centric project with N_TASKS dialogues (one per intent) and Prompter connected, interactive on."""
    labels = intents(dstc11_utterances)
    chosen = one_per_intent(dstc11_utterances, N_TASKS)
    project = ls_api.create_project("prompter e2e workflow", prompt_centric_config(labels))
    task_ids = ls_api.import_tasks(project["id"], [dialogue_task(u) for u in chosen])
    offset = prompter_server.log_size()
    started = time.monotonic()
    ml = ls_api.connect_ml_backend(project["id"], prompter_server.url, is_interactive=True)
    _say(f"connect ML backend: {time.monotonic() - started:.1f} s")
    return Workflow(project, task_ids, chosen, labels, ml, prompter_server.log_text(offset))


@pytest.fixture(scope="module")
def predicted(workflow: Workflow, ls_api: LabelStudioAPI, prompter_server: PrompterServer) -> Workflow:
    """The Data Manager's "Retrieve predictions" for all tasks of the project, in one call."""
    offset = prompter_server.log_size()
    started = time.monotonic()
    ls_api.retrieve_predictions(workflow.project_id, workflow.task_ids)
    _say(f"retrieve predictions for {len(workflow.task_ids)} tasks: {time.monotonic() - started:.1f} s")
    calls = prompter_server.log_text(offset).count('"POST /predict HTTP/1.1" 200')
    assert calls == 1, f"Label Studio should send all {len(workflow.task_ids)} tasks in one /predict, sent {calls}"
    for task_id in workflow.task_ids:
        stored = ls_api.list_predictions(task_id)
        assert len(stored) == 1, f"task {task_id}: expected one prediction, Label Studio stored {stored}"
        workflow.predictions[task_id] = stored[0]
    return workflow


@pytest.fixture(scope="module")
def corrected(predicted: Workflow, ls_api: LabelStudioAPI) -> Workflow:
    """Every task annotated with an intent its prediction did not choose (the gold one where it differs)."""
    for task_id, utterance in zip(predicted.task_ids, predicted.utterances, strict=True):
        chosen = set(_by_name(predicted.predictions[task_id]["result"])["intent"]["value"]["choices"])
        wrong = [label for label in predicted.labels if label not in chosen]
        gold = utterance.label if utterance.label not in chosen else wrong[0]
        result = [
            {"from_name": "prompt", "to_name": "chat", "type": "textarea", "value": {"text": [PROMPT]}},
            {"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": [gold]}},
        ]
        predicted.annotations[task_id] = ls_api.create_annotation(task_id, result)
    return predicted


def _stored_annotations(prompter_server: PrompterServer, project_id: int) -> list[Annotation]:
    engine = create_engine(f"sqlite:///{prompter_server.database_path}")
    try:
        with Session(engine) as session:
            return list(session.exec(select(Annotation).where(Annotation.project_id == str(project_id))))
    finally:
        engine.dispose()


# --- the prompt-centric project -------------------------------------------------------------------


def test_connecting_runs_label_studios_health_and_setup(
    workflow: Workflow, ls_api: LabelStudioAPI, prompter_server: PrompterServer
) -> None:
    assert workflow.ml["state"] == "CO", workflow.ml
    assert workflow.ml["is_interactive"] is True
    assert MODEL_VERSION.match(workflow.ml["model_version"] or ""), workflow.ml
    # Label Studio's own calls, as Prompter answered them.
    assert '"GET /health HTTP/1.1" 200' in workflow.connect_log, workflow.connect_log
    assert '"POST /setup HTTP/1.1" 200' in workflow.connect_log, workflow.connect_log
    assert not re.search(r'"(GET|POST) /(health|setup) HTTP/1\.1" [45]\d\d', workflow.connect_log)
    # /setup stored the project with its labeling config.
    stored = httpx.get(f"{prompter_server.url}/projects/{workflow.project_id}", timeout=10)
    assert stored.status_code == 200, stored.text
    assert stored.json()["label_config"] == workflow.project["label_config"]
    # Label Studio created the /webhook for all actions itself.
    hooks = ls_api.webhooks(workflow.project_id)
    assert [h["url"] for h in hooks] == [f"{prompter_server.url}/webhook"], hooks
    assert hooks[0]["send_for_all_actions"] and hooks[0]["send_payload"]


def test_interactive_prompt_in_context_gives_labels_response_and_echo(
    workflow: Workflow, ls_api: LabelStudioAPI
) -> None:
    started = time.monotonic()
    answer = ls_api.interactive_annotating(workflow.ml["id"], workflow.task_ids[0], prompt_context(PROMPT))
    _say(f"interactive annotating (Shift+Enter): {time.monotonic() - started:.1f} s")
    data = answer["data"]
    regions = _by_name(data["result"])
    assert set(regions) == {"intent", "response", "prompt"}, data["result"]
    choices = regions["intent"]["value"]["choices"]
    assert choices and set(choices) <= set(workflow.labels), choices
    assert len(choices) == len(set(choices)), f"a label twice: {choices}"
    response = regions["response"]["value"]["text"]
    assert isinstance(response, list) and len(response) == 1 and response[0].strip(), regions["response"]
    assert regions["prompt"]["value"]["text"] == [PROMPT], regions["prompt"]
    for region in data["result"]:
        assert region["to_name"] == "chat", region
    assert 0.0 < data["score"] <= 1.0, data
    assert MODEL_VERSION.match(data["model_version"]), data


def test_retrieve_predictions_stores_one_scored_prediction_per_task(
    predicted: Workflow, ls_api: LabelStudioAPI
) -> None:
    scores, versions = [], set()
    for task_id, prediction in predicted.predictions.items():
        regions = _by_name(prediction["result"])
        choices = regions["intent"]["value"]["choices"]
        assert choices and set(choices) <= set(predicted.labels), (task_id, choices)
        assert len(choices) == len(set(choices)), (task_id, choices)
        assert 0.0 < prediction["score"] <= 1.0, (task_id, prediction["score"])
        scores.append(prediction["score"])
        versions.add(prediction["model_version"])
        # The prompt in force is echoed into the prompt TextArea, so annotators see it.
        assert regions["prompt"]["value"]["text"][0].strip(), regions["prompt"]
    assert len(set(scores)) > 1, f"every task got the same score {scores}: not a real probability"
    assert len(versions) == 1 and MODEL_VERSION.match(versions.pop())
    # Asking again changes nothing: Label Studio skips tasks that have the current model version.
    ls_api.retrieve_predictions(predicted.project_id, predicted.task_ids)
    assert all(len(ls_api.list_predictions(t)) == 1 for t in predicted.task_ids)


def test_corrections_reach_prompter_through_webhooks(corrected: Workflow, prompter_server: PrompterServer) -> None:
    stored = {a.id: a for a in _stored_annotations(prompter_server, corrected.project_id)}
    for task_id, annotation in corrected.annotations.items():
        row = stored.get(annotation["id"])
        assert row is not None, f"annotation {annotation['id']} of task {task_id} never reached Prompter: {stored}"
        assert row.task_id == task_id
        assert row.choices == {"intent": annotation["result"][1]["value"]["choices"]}, row.choices
        assert row.prompt_text == PROMPT
        predicted = set(_by_name(corrected.predictions[task_id]["result"])["intent"]["value"]["choices"])
        assert set(row.choices["intent"]) - predicted, "the annotation should disagree with the prediction"


# --- a second project: single choice on a Text object ---------------------------------------------

SINGLE_LABELS = ["CheckAccountBalance", "FileClaim", "GetQuote", "PayBill", "ResetPassword"]
SINGLE_CONFIG = """<View>
  <Text name="Text" value="$text"/>
  <TextArea name="prompt" toName="Text" rows="2" editable="true" maxSubmissions="1" showSubmitButton="false"/>
  <Choices name="Intent" toName="Text" choice="single" showInline="true">
{choices}
  </Choices>
</View>"""


def test_single_choice_text_project(
    ls_api: LabelStudioAPI, prompter_server: PrompterServer, dstc11_utterances: list
) -> None:
    """Capitalised tag names (the llm_interactive example lowercases them and finds nothing)."""
    chosen = [u for u in one_per_intent(dstc11_utterances, 22) if u.label in SINGLE_LABELS][:3]
    config = SINGLE_CONFIG.format(choices="\n".join(f'    <Choice value="{label}"/>' for label in SINGLE_LABELS))
    project = ls_api.create_project("prompter e2e single choice", config)
    task_ids = ls_api.import_tasks(project["id"], [{"data": {"text": u.text}} for u in chosen])
    ml = ls_api.connect_ml_backend(project["id"], prompter_server.url, is_interactive=True)

    started = time.monotonic()
    ls_api.retrieve_predictions(project["id"], task_ids)
    _say(f"retrieve predictions, single choice, {len(task_ids)} tasks: {time.monotonic() - started:.1f} s")
    scores = []
    for task_id in task_ids:
        stored = ls_api.list_predictions(task_id)
        assert len(stored) == 1, f"task {task_id}: {stored}"
        intent = _by_name(stored[0]["result"])["Intent"]
        assert intent["to_name"] == "Text" and intent["type"] == "choices", intent
        assert len(intent["value"]["choices"]) == 1 and intent["value"]["choices"][0] in SINGLE_LABELS, intent
        assert 0.0 < stored[0]["score"] <= 1.0
        scores.append(stored[0]["score"])
    assert len(set(scores)) > 1, f"every task got the same score {scores}"

    prompt = "What does the customer want to do?"
    answer = ls_api.interactive_annotating(ml["id"], task_ids[0], {
        "result": [{"from_name": "prompt", "to_name": "Text", "type": "textarea", "value": {"text": [prompt]}}]
    })  # fmt: skip
    regions = _by_name(answer["data"]["result"])
    assert len(regions["Intent"]["value"]["choices"]) == 1, regions
    assert regions["Intent"]["value"]["choices"][0] in SINGLE_LABELS
    assert regions["prompt"]["value"]["text"] == [prompt]
