"""Live evaluations over HTTP: annotations arrive by webhook, an annotator types a prompt at /predict, and its
evaluation against the active version appears under /prompts/{version}/evaluations and in /metrics; a typed
version is made active by the proposals' accept flow. The tiny real engine, the real store."""

from __future__ import annotations

import copy
import threading

from fastapi.testclient import TestClient

from agent import hooks, live_eval

MODEL = "test/tiny-gemma3"
INTENTS = ["FileClaim", "CheckAccountBalance", "ChangeAddress", "CancelPlan", "FileClaim", "ChangeAddress"]
TEXTS = [
    "I had a car accident and need to file a claim.",
    "How much is left on my account?",
    "I moved last week, please update my address.",
    "I want to cancel my plan today.",
    "A tree fell on my house, I need to claim the damage.",
    "My new address is 12 Elm Street.",
]
TYPED = "Which intent does the customer have?"


def annotate(client: TestClient, ls: dict, project: int = 1) -> None:
    """Six annotated tasks by webhook (their data comes with the event), then the background work done."""
    annotate_only(client, ls, project)
    settle()


def annotate_only(client: TestClient, ls: dict, project: int = 1) -> None:
    for i, (text, intent) in enumerate(zip(TEXTS, INTENTS, strict=True), start=1):
        event = copy.deepcopy(ls["webhook_annotation_created"])
        event["project"]["id"] = project
        event["annotation"].update(id=100 * project + i, task=i, project=project)
        event["annotation"]["result"] = [
            {"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": [intent]}}
        ]
        event["task"] = {"id": i, "project": project, "data": {"dialogue": [{"author": "customer", "text": text}]}}
        assert client.post("/webhook", json=event).status_code == 200


def settle() -> None:
    assert hooks.worker().join(120) and live_eval.evaluator().join(300)


def type_prompt(client: TestClient, ls: dict, text: str, project: str = "1.1700000000") -> None:
    body = copy.deepcopy(ls["predict_interactive"])
    body["project"] = project
    body["params"]["context"]["result"][0]["value"]["text"] = [text]
    assert client.post("/predict", json=body).status_code == 200


def versions(client: TestClient, project: str = "1") -> dict[int, dict]:
    return {v["id"]: v for v in client.get(f"/projects/{project}/prompts").json()}


def test_a_typed_prompt_is_measured_against_the_active_one_and_can_be_accepted(client: TestClient, ls: dict) -> None:
    assert client.post("/setup", json=ls["setup"]).status_code == 200
    annotate(client, ls)
    (active,) = [v for v in versions(client).values() if v["is_active"]]
    assert active["evaluation"]["tasks"] == 6 and active["evaluation"]["trigger"] == "annotations"

    type_prompt(client, ls, TYPED)
    settle()
    typed = next(v for v in versions(client).values() if v["text"] == TYPED)
    (evaluation, *_) = client.get(f"/projects/1/prompts/{typed['id']}/evaluations").json()
    assert evaluation["trigger"] == "typed" and evaluation["status"] == "ok" and evaluation["tasks"] == 6
    assert evaluation["compared_with_id"] == active["id"]
    assert evaluation["compared_accuracy"] == active["evaluation"]["accuracy"]
    assert set(evaluation["fixes"]) | set(evaluation["breaks"]) <= set(range(1, 7))
    gain = (len(evaluation["fixes"]) - len(evaluation["breaks"])) / 6
    assert abs(evaluation["accuracy"] - evaluation["compared_accuracy"] - gain) < 1e-9
    assert 0.0 <= evaluation["p_value"] <= 1.0 and isinstance(evaluation["significant"], bool)
    assert evaluation["model_version"] == f"prompt-{typed['id']}@{MODEL}"
    headline = versions(client)[typed["id"]]["evaluation"]
    assert (headline["compared_with_id"], headline["fixes"]) == (active["id"], len(evaluation["fixes"]))
    stored = sum(len(client.get(f"/projects/1/prompts/{v}/evaluations").json()) for v in versions(client))
    assert stored >= 2 and client.get("/metrics").json()["evaluations"] == {"ok": stored, "failed": 0}

    refused = client.post(
        f"/projects/1/prompts/{typed['id']}/accept", content="{}", headers={"Content-Type": "text/plain"}
    )
    assert refused.status_code == 415  # state changes take JSON only
    accepted = client.post(f"/projects/1/prompts/{typed['id']}/accept", json={"decided_by": "ana"})
    assert accepted.status_code == 200, accepted.text
    result = accepted.json()
    assert result["model_version"] == f"prompt-{typed['id']}@{MODEL}" and result["version"]["is_active"]
    proposal = result["proposal"]
    assert (proposal["strategy"], proposal["status"], proposal["decided_by"]) == ("annotator", "accepted", "ana")
    assert proposal["base_version_id"] == active["id"] and proposal["result_version_id"] == typed["id"]
    assert proposal["metrics"]["accuracy"] == {
        "before": evaluation["compared_accuracy"],
        "after": evaluation["accuracy"],
    }
    now = versions(client)
    assert now[typed["id"]]["is_active"] and now[typed["id"]]["parent_id"] == active["id"]  # lineage kept
    again = client.post(f"/projects/1/prompts/{typed['id']}/accept", json={})
    assert again.status_code == 409 and "already the active" in again.json()["detail"]
    settle()  # accepted: measured as the active version, from the figures it already has on these tasks
    latest = client.get(f"/projects/1/prompts/{typed['id']}/evaluations").json()[0]
    assert latest["trigger"] == "accepted" and latest["compared_with_id"] is None
    assert latest["accuracy"] == evaluation["accuracy"] and latest["tasks_key"] == evaluation["tasks_key"]
    assert client.post("/projects/1/prompts/999/accept", json={}).status_code == 404


def test_a_project_without_annotations_gets_no_evaluation(client: TestClient, ls: dict) -> None:
    assert client.post("/setup", json=ls["setup"]).status_code == 200
    type_prompt(client, ls, TYPED)
    settle()
    assert all(v["evaluation"] is None for v in versions(client).values())
    assert client.get("/metrics").json()["evaluations"] == {"ok": 0, "failed": 0}


def test_a_stuck_evaluation_never_holds_up_predict_or_the_webhook(client: TestClient, ls: dict, tiny_engine) -> None:
    """The evaluator's engine is held (as a long evaluation would hold it): annotations and a typed prompt are
    still answered, and the evaluations land once it is let go."""
    gate = threading.Event()

    def held():
        assert gate.wait(120), "never let go"
        return tiny_engine

    evaluator = live_eval.LiveEvaluator(held, live_eval.evaluator().sessions)
    live_eval.install(evaluator)
    try:
        assert client.post("/setup", json=ls["setup"]).status_code == 200
        annotate_only(client, ls)  # each webhook queues a re-evaluation behind the held one
        type_prompt(client, ls, TYPED)  # answered while the evaluator waits
        assert not evaluator.join(0.5)  # still held: nothing was measured
        assert client.get("/metrics").json()["evaluations"] == {"ok": 0, "failed": 0}
        gate.set()
        settle()
        typed = next(v for v in versions(client).values() if v["text"] == TYPED)
        assert typed["evaluation"]["status"] == "ok" and typed["evaluation"]["tasks"] == 6
    finally:
        gate.set()
        assert evaluator.join(120)
        live_eval._evaluator = None  # the next app gets the process's own evaluator
