"""Pins what a real Label Studio 1.23 sends to an ML backend, using a recording stub backend (no Prompter).

The bodies captured here are written (trimmed of tokens and timestamps) to fixtures/ls_requests.json
when PROMPTER_RECORD_LS_FIXTURES=1; otherwise the committed file is checked to have the same shape as
what Label Studio sends today, so HTTP tests built on it stay true to the real client.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dstc11 import prompt_context
from ls_api import LabelStudioAPI
from ls_server import LabelStudioServer

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parent / "fixtures" / "ls_requests.json"
MODEL_VERSION = "stub-v1"
_UNRECORDED_HEADERS = {"authorization", "host", "content-length"}


class StubBackend:
    """A minimal ML backend on 127.0.0.1 that records every request and answers like a real one."""

    def __init__(self, choice_for_task: Callable[[dict[str, Any]], str]) -> None:
        self.requests: list[dict[str, Any]] = []
        self.choice_for_task = choice_for_task
        self.failing_paths: set[str] = set()
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                stub._handle(self, None)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                stub._handle(self, json.loads(raw) if raw else None)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StubBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        path = handler.path.split("?")[0]
        with self._lock:
            self.requests.append(
                {
                    "method": handler.command,
                    "path": handler.path,
                    "headers": {k: v for k, v in handler.headers.items() if k.lower() not in _UNRECORDED_HEADERS},
                    "body": body,
                }
            )
        status, answer = self._answer(handler.command, path, body)
        payload = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path in self.failing_paths:
            return 500, {"detail": f"stub failure on {path}"}
        if (method, path) == ("GET", "/health"):
            return 200, {"status": "UP", "model_class": "StubBackend"}
        if (method, path) == ("POST", "/setup"):
            return 200, {"model_version": MODEL_VERSION}
        if (method, path) == ("POST", "/predict"):
            return 200, {"results": [self._prediction(task, body["params"]) for task in body["tasks"]]}
        if (method, path) == ("POST", "/webhook"):
            return 200, {"status": "ok"}
        if (method, path) == ("GET", "/versions"):
            return 200, {"versions": [MODEL_VERSION]}
        return 404, {"detail": f"no route {method} {path}"}

    def _prediction(self, task: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        context = params.get("context") or {}
        prompts = [r["value"]["text"][0] for r in context.get("result", []) if r.get("from_name") == "prompt"]
        response = f"answer to: {prompts[0]}" if prompts else f"stub response for task {task['id']}"
        return {
            "model_version": MODEL_VERSION,
            "score": 0.75,
            "result": [
                {
                    "from_name": "intent",
                    "to_name": "chat",
                    "type": "choices",
                    "value": {"choices": [self.choice_for_task(task)]},
                },
                {"from_name": "response", "to_name": "chat", "type": "textarea", "value": {"text": [response]}},
            ],
        }

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["method"] == method and r["path"].split("?")[0] == path]

    def webhooks(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.calls("POST", "/webhook") if (r["body"] or {}).get("action") == action]

    def wait_for(self, what: str, found: Callable[[], list], timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if items := found():
                return items
            time.sleep(0.05)
        with self._lock:
            seen = [(r["method"], r["path"], (r["body"] or {}).get("action")) for r in self.requests]
        raise AssertionError(f"{what} never reached the stub backend; it saw {seen}")


@pytest.fixture
def labels_by_utterance(prompt_project: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return prompt_project(n_tasks=3, title="harness")


@pytest.fixture
def stub_backend(labels_by_utterance: dict[str, Any]) -> Iterator[StubBackend]:
    gold = {u.id: u.label for u in labels_by_utterance["utterances"]}
    with StubBackend(lambda task: gold[task["data"]["utterance_id"]]) as stub:
        yield stub


def test_label_studio_drives_an_ml_backend(
    label_studio: LabelStudioServer,
    ls_api: LabelStudioAPI,
    labels_by_utterance: dict[str, Any],
    stub_backend: StubBackend,
) -> None:
    project = labels_by_utterance["project"]
    task_ids: list[int] = labels_by_utterance["task_ids"]
    gold = {u.id: u.label for u in labels_by_utterance["utterances"]}
    assert len(task_ids) == 3
    label_config = project["label_config"]

    # Connecting: /health and /setup, with the project's uid and its config.
    ml = ls_api.connect_ml_backend(project["id"], stub_backend.url, title="stub")
    assert stub_backend.calls("GET", "/health"), "LS did not call /health on connecting"
    setup = stub_backend.calls("POST", "/setup")
    assert setup, "LS did not call /setup on connecting"
    setup_body = setup[-1]["body"]
    assert re.fullmatch(rf"{project['id']}\.\d+", setup_body["project"]), setup_body["project"]
    assert setup_body["schema"] == label_config
    assert setup_body["access_token"] == label_studio.token
    assert "hostname" in setup_body and "extra_params" in setup_body
    assert ml["model_version"] == MODEL_VERSION, ml

    # Retrieve predictions: all selected tasks in one /predict call.
    n_predict_before = len(stub_backend.calls("POST", "/predict"))
    answer = ls_api.retrieve_predictions(project["id"], task_ids)
    assert answer.get("processed_items") == 3, answer
    predicts = stub_backend.calls("POST", "/predict")[n_predict_before:]
    assert len(predicts) == 1, f"expected one batched /predict, got {len(predicts)}"
    predict_body = predicts[0]["body"]
    assert sorted(predict_body) == ["label_config", "params", "project", "tasks"], sorted(predict_body)
    assert predict_body["project"] == setup_body["project"]
    assert predict_body["label_config"] == label_config
    assert predict_body["params"] == {"login": None, "password": None, "context": None}
    assert [t["id"] for t in predict_body["tasks"]] == task_ids
    for task in predict_body["tasks"]:
        assert task["data"]["dialogue"][0]["author"] == "customer"
        assert task["data"]["dialogue"][1]["author"] == "agent"
        assert task["project"] == project["id"]

    # LS stored what the stub returned, one prediction per task.
    for task in predict_body["tasks"]:
        stored = ls_api.list_predictions(task["id"])
        assert len(stored) == 1, stored
        prediction = stored[0]
        assert prediction["model_version"] == MODEL_VERSION
        assert prediction["score"] == pytest.approx(0.75)
        by_name = {r["from_name"]: r for r in prediction["result"]}
        assert by_name["intent"]["value"]["choices"] == [gold[task["data"]["utterance_id"]]]
        assert by_name["response"]["value"]["text"] == [f"stub response for task {task['id']}"]

    # A second retrieval with the same model version asks nothing: every task has its prediction.
    n_predict_before = len(stub_backend.calls("POST", "/predict"))
    ls_api.retrieve_predictions(project["id"], task_ids)
    assert len(stub_backend.calls("POST", "/predict")) == n_predict_before

    # Interactive preannotation from the prompt TextArea: one task, the context, full predictions.
    n_predict_before = len(stub_backend.calls("POST", "/predict"))
    context = prompt_context("Classify the customer's intent.")
    interactive = ls_api.interactive_annotating(ml["id"], task_ids[1], context)
    predicts = stub_backend.calls("POST", "/predict")[n_predict_before:]
    assert len(predicts) == 1
    interactive_body = predicts[0]["body"]
    assert interactive_body["params"]["context"] == context
    assert [t["id"] for t in interactive_body["tasks"]] == [task_ids[1]]
    interactive_task = interactive_body["tasks"][0]
    assert isinstance(interactive_task["predictions"], list) and len(interactive_task["predictions"]) == 1
    assert isinstance(interactive_task["drafts"], list)
    response_text = interactive["data"]["result"][1]["value"]["text"]
    assert response_text == ["answer to: Classify the customer's intent."], interactive

    # An annotation: ANNOTATION_CREATED reaches /webhook with the result and the task.
    result = [
        {"from_name": "prompt", "to_name": "chat", "type": "textarea",
         "value": {"text": ["Classify the customer's intent."]}},
        {"from_name": "response", "to_name": "chat", "type": "textarea", "value": {"text": ["corrected"]}},
        {"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": ["FileClaim"]}},
    ]  # fmt: skip
    annotation = ls_api.create_annotation(task_ids[0], result)
    created = stub_backend.wait_for("ANNOTATION_CREATED", lambda: stub_backend.webhooks("ANNOTATION_CREATED"))
    webhook_body = created[-1]["body"]
    assert webhook_body["annotation"]["id"] == annotation["id"]
    assert webhook_body["annotation"]["task"] == task_ids[0]
    assert webhook_body["task"]["id"] == task_ids[0]
    assert webhook_body["project"]["id"] == project["id"]
    assert webhook_body["project"]["label_config"] == label_config
    assert [(r["from_name"], r["value"]) for r in webhook_body["annotation"]["result"]] == [
        (r["from_name"], r["value"]) for r in result
    ]

    # Updating it: ANNOTATION_UPDATED.
    result[2]["value"] = {"choices": ["FileClaim", "GetQuote"]}
    ls_api.update_annotation(annotation["id"], result)
    updated = stub_backend.wait_for("ANNOTATION_UPDATED", lambda: stub_backend.webhooks("ANNOTATION_UPDATED"))
    assert updated[-1]["body"]["annotation"]["result"][2]["value"]["choices"] == ["FileClaim", "GetQuote"]

    # "Start training": START_TRAINING reaches /webhook with the project.
    ls_api.train(ml["id"])
    training = stub_backend.wait_for("START_TRAINING", lambda: stub_backend.webhooks("START_TRAINING"))
    assert training[-1]["body"]["project"]["id"] == project["id"]

    # Model versions view.
    label_studio.api("GET", f"/api/ml/{ml['id']}/versions", expect=200)
    assert stub_backend.calls("GET", "/versions"), "LS did not call /versions"

    captured = {
        "label_studio_version": "1.23.2",
        "note": "Real request bodies Label Studio sent to an ML backend, captured by "
        "tests/e2e/test_label_studio_harness.py; tokens and timestamps replaced with fixed values.",
        "health": stub_backend.calls("GET", "/health")[-1],
        "setup": setup[-1],
        "predict_batch": predicts_batch(stub_backend, task_ids),
        "predict_interactive": predicts[0],
        "webhook_annotation_created": created[-1],
        "webhook_annotation_updated": updated[-1],
        "webhook_start_training": training[-1],
        "versions": stub_backend.calls("GET", "/versions")[-1],
        "webhook_actions_seen": sorted(
            {(r["body"] or {}).get("action") for r in stub_backend.calls("POST", "/webhook")}
        ),
    }
    check_or_record(trim(captured, label_studio), label_studio.workdir / "ls_requests.json")


def test_a_failing_backend_shows_only_in_the_log(
    label_studio: LabelStudioServer,
    ls_api: LabelStudioAPI,
    labels_by_utterance: dict[str, Any],
    stub_backend: StubBackend,
    allow_backend_errors: None,
) -> None:
    """LS reports a failed /predict as success and stores nothing: `log_errors()` is what tells."""
    project = labels_by_utterance["project"]
    task_ids = labels_by_utterance["task_ids"]

    stub_backend.failing_paths.add("/setup")
    response = label_studio.api(
        "POST", "/api/ml", json={"url": stub_backend.url, "project": project["id"], "is_interactive": True}
    )
    assert response.status_code == 400, f"LS accepted a backend whose /setup fails: {response.text}"
    stub_backend.failing_paths.clear()
    ml = ls_api.connect_ml_backend(project["id"], stub_backend.url, title="stub")

    stub_backend.failing_paths.add("/predict")
    offset = label_studio.log_size()
    answer = ls_api.retrieve_predictions(project["id"], task_ids)
    assert answer == {"processed_items": 3, "detail": "Retrieved 3 predictions"}
    assert len(stub_backend.calls("POST", "/predict")) == 1
    assert all(ls_api.list_predictions(task_id) == [] for task_id in task_ids)
    errors = label_studio.log_errors(since=offset)
    assert any("500 Server Error" in line for line in errors), errors

    offset = label_studio.log_size()
    response = label_studio.api(
        "POST",
        f"/api/ml/{ml['id']}/interactive-annotating",
        json={"task": task_ids[0], "context": prompt_context("Classify.")},
        expect=200,
    )
    assert "500 Server Error" in response.json()["errors"][0], response.json()
    assert any("Prediction not created" in line for line in label_studio.log_errors(since=offset))


def predicts_batch(stub: StubBackend, task_ids: list[int]) -> dict[str, Any]:
    return next(r for r in stub.calls("POST", "/predict") if len(r["body"]["tasks"]) == len(task_ids))


_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


def trim(captured: dict[str, Any], server: LabelStudioServer) -> dict[str, Any]:
    """Replace the token, timestamps, ports and the project's creation time with fixed values."""
    text = json.dumps(captured)
    text = text.replace(server.token, "<token>")
    text = text.replace(f"127.0.0.1:{server.port}", "127.0.0.1:8080").replace(
        f"localhost:{server.port}", "localhost:8080"
    )
    text = re.sub(r'"(\d+)\.\d{9,}"', r'"\1.1700000000"', text)  # project uid "<id>.<created ts>"
    data = json.loads(text)

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            # A project's own "token" (its invite link) is random: not a value to pin.
            return {k: "<project-token>" if k == "token" else walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and _TIMESTAMP.match(value):
            return "2025-01-01T00:00:00.000000Z"
        return value

    return walk(data)


def shape(value: Any) -> Any:
    """Keys and value types, recursively: what must not drift between the fixture and today's LS."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def check_or_record(captured: dict[str, Any], copy_path: Path) -> None:
    copy_path.write_text(json.dumps(captured, indent=2) + "\n")
    if os.environ.get("PROMPTER_RECORD_LS_FIXTURES") == "1":
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps(captured, indent=2) + "\n")
        print(f"\n[e2e] recorded {FIXTURE}")
        return
    assert FIXTURE.exists(), f"{FIXTURE} missing: run with PROMPTER_RECORD_LS_FIXTURES=1 to record it"
    committed = json.loads(FIXTURE.read_text())
    ignore = ("label_studio_version", "note")
    want = {k: shape(v) for k, v in committed.items() if k not in ignore}
    got = {k: shape(v) for k, v in captured.items() if k not in ignore}
    assert got == want, (
        f"Label Studio's requests changed shape against {FIXTURE}; today's capture is in {copy_path}. "
        "Re-record with PROMPTER_RECORD_LS_FIXTURES=1 if the change is real."
    )
