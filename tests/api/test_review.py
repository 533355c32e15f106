"""Review over HTTP: prompt history, diffs, proposals accepted or rejected, rollback, refinement on demand,
and the review page itself. Proposals are the agent's rows with metrics from its own ``compare``."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from agent import hooks
from agent.evaluate import TEST_NAME, Scored, compare
from agent.loop import Worker, start_run
from service.api.app import create_app
from service.settings import settings
from service.store import db, repo
from service.store.models import AnnotationCreate, Prediction, Proposal
from service.store.tasks import AnnotatedTask, remember_tasks
from tests.agent.conftest import CONFIG, CopyEngine, labeled
from tests.conftest import LOOPBACK

MODEL = "test/tiny-gemma3"  # the tiny engine's model id


def evidence() -> dict:
    """Metrics as the agent writes them: 8 validation tasks, the candidate fixes 6 and breaks 1."""
    golds = ["PayBill", "FileClaim", "GetQuote", "PayBill", "FileClaim", "GetQuote", "PayBill", "FileClaim"]
    base = ["PayBill", "GetQuote", "GetQuote", "FileClaim", "GetQuote", "PayBill", "FileClaim", "GetQuote"]
    cand = ["PayBill", "FileClaim", "PayBill", "PayBill", "FileClaim", "GetQuote", "PayBill", "FileClaim"]
    tasks = [AnnotatedTask(i, {"text": f"task {i}"}, {"intent": [g]}) for i, g in enumerate(golds, start=1)]

    def scored(labels: list[str]) -> Scored:
        return Scored([{"intent": [x]} for x in labels], [x == g for x, g in zip(labels, golds, strict=True)], 1.5, 40)

    cost = {"tokens": 1234, "seconds": 2.5}
    return compare(scored(base), scored(cand), tasks, 0.05, cost).metrics


def propose(db_url: str, project_id: str, text: str, base_version_id: int | None = None) -> int:
    """A pending proposal on the project's active version (or ``base_version_id``); returns its id."""
    with Session(db.sql_engine(db_url)) as session:
        base_id = base_version_id or repo.active_prompt(session, project_id).id
        proposal = Proposal(
            project_id=project_id, base_version_id=base_id, strategy="definitions", text=text, metrics=evidence()
        )
        session.add(proposal)
        session.commit()
        return proposal.id


@pytest.fixture
def project(client: TestClient, ls: dict) -> str:
    """Project 1 set up by Label Studio: the default prompt is version 1, active."""
    assert client.post("/setup", json=ls["setup"]).status_code == 200
    return "1"


def _prompt_text(client: TestClient, project_id: str) -> str:
    return next(v["text"] for v in client.get(f"/projects/{project_id}/prompts").json() if v["is_active"])


# -- prompts ----------------------------------------------------------------------------------------


def test_history_has_lineage_metrics_and_model_versions(client: TestClient, project: str, db_url: str) -> None:
    with Session(db.sql_engine(db_url)) as session:
        repo.record_prompt(session, project, "Pick the intent.\n{dialogue}", "user", author="ana", parent_id=1)
    history = client.get(f"/projects/{project}/prompts").json()
    assert [(v["id"], v["source"], v["parent_id"], v["is_active"]) for v in history] == [
        (1, "default", None, True),
        (2, "user", 1, False),
    ]
    assert history[1]["author"] == "ana" and history[1]["created_at"]
    assert [v["model_version"] for v in history] == [f"prompt-1@{MODEL}", f"prompt-2@{MODEL}"]
    assert client.get("/projects/nope/prompts").status_code == 404


def test_diff_between_versions(client: TestClient, project: str, db_url: str, ls: dict) -> None:
    default = _prompt_text(client, project)
    changed = default.replace("intent", "customer's intent", 1)
    assert changed != default
    with Session(db.sql_engine(db_url)) as session:
        repo.record_prompt(session, project, changed, "user", parent_id=1)
        repo.record_prompt(session, "2", "another project's prompt", "user")
        other = repo.active_prompt(session, "2").id

    response = client.get(f"/projects/{project}/prompts/diff", params={"from": 1, "to": 2})
    assert response.status_code == 200
    body = response.json()
    assert (body["from_id"], body["to_id"]) == (1, 2)
    lines = body["diff"].splitlines()
    assert lines[:2] == ["--- version 1", "+++ version 2"]
    assert any(line.startswith("-") and "intent" in line and "customer's" not in line for line in lines[2:])
    assert any(line.startswith("+") and "customer's intent" in line for line in lines[2:])
    # from defaults to the parent
    assert client.get(f"/projects/{project}/prompts/diff", params={"to": 2}).json() == body

    def status(**params: int) -> int:
        return client.get(f"/projects/{project}/prompts/diff", params=params).status_code

    assert status(to=1) == 422  # no parent, no from
    assert status() == 422
    assert status(to=99) == 404
    assert status(**{"from": 1, "to": other}) == 409
    assert client.get("/projects/nope/prompts/diff", params={"to": 1}).status_code == 404


def test_activate_rolls_back_and_predict_follows(client: TestClient, project: str, db_url: str, ls: dict) -> None:
    with Session(db.sql_engine(db_url)) as session:
        repo.record_prompt(session, project, "Pick the intent.", "user", parent_id=1, activate=True)
        repo.record_prompt(session, "2", "another project's prompt", "user")
        other = repo.active_prompt(session, "2").id
    first = client.post("/predict", json=ls["predict_batch"]).json()["results"][0]
    assert first["model_version"] == f"prompt-2@{MODEL}"

    response = client.post(f"/projects/{project}/prompts/1/activate")
    assert response.status_code == 200
    assert response.json()["version"]["id"] == 1 and response.json()["version"]["is_active"] is True
    assert response.json()["model_version"] == f"prompt-1@{MODEL}"
    assert [v["is_active"] for v in client.get(f"/projects/{project}/prompts").json()] == [True, False]
    again = client.post("/predict", json=ls["predict_batch"]).json()["results"][0]
    assert again["model_version"] == f"prompt-1@{MODEL}"

    assert client.post(f"/projects/{project}/prompts/1/activate").status_code == 200  # already active: no change
    assert client.post(f"/projects/{project}/prompts/99/activate").status_code == 404
    wrong = client.post(f"/projects/{project}/prompts/{other}/activate")
    assert wrong.status_code == 409 and "belongs to project 2" in wrong.json()["detail"]
    assert client.post("/projects/nope/prompts/1/activate").status_code == 404
    with Session(db.sql_engine(db_url)) as session:
        assert repo.active_prompt(session, "2").id == other


# -- proposals --------------------------------------------------------------------------------------


def test_list_and_read_proposals(client: TestClient, project: str, db_url: str) -> None:
    text = _prompt_text(client, project) + "\nA bill is paid with PayBill; a claim is filed with FileClaim."
    proposal_id = propose(db_url, project, text)

    listed = client.get(f"/projects/{project}/proposals", params={"status": "pending"}).json()
    assert [(p["id"], p["status"], p["base_version_id"]) for p in listed] == [(proposal_id, "pending", 1)]
    assert client.get(f"/projects/{project}/proposals", params={"status": "rejected"}).json() == []
    assert client.get(f"/projects/{project}/proposals", params={"status": "maybe"}).status_code == 422
    assert client.get("/projects/nope/proposals").status_code == 404

    detail = client.get(f"/proposals/{proposal_id}").json()
    assert "+A bill is paid with PayBill; a claim is filed with FileClaim." in detail["diff"].splitlines()
    assert detail["diff"].startswith(f"--- version 1\n+++ proposal {proposal_id}\n")
    m = detail["metrics"]
    assert m["accuracy"] == {"before": 0.25, "after": 0.875}
    assert m["macro_f1"]["after"] > m["macro_f1"]["before"]
    assert [f["task_id"] for f in m["fixes"]] == [2, 4, 5, 6, 7, 8] and [b["task_id"] for b in m["breaks"]] == [3]
    assert m["breaks"][0] == {"task_id": 3, "gold": {"intent": ["GetQuote"]},
                              "before": {"intent": ["GetQuote"]}, "after": {"intent": ["PayBill"]}}  # fmt: skip
    assert set(m["per_label"]) == {"FileClaim", "GetQuote", "PayBill"}
    assert m["test"] == TEST_NAME and m["p_value"] == pytest.approx(0.0625)  # one-sided: (1 + 7) / 2^7
    assert m["cost"] == {"tokens": 1234, "seconds": 2.5}
    missing = client.get("/proposals/999")
    assert missing.status_code == 404 and missing.json() == {"detail": "no proposal 999"}


def test_accept_makes_a_new_active_version_and_predict_uses_it(
    client: TestClient, project: str, db_url: str, ls: dict
) -> None:
    before = client.post("/predict", json=ls["predict_batch"]).json()["results"]
    assert {r["model_version"] for r in before} == {f"prompt-1@{MODEL}"}
    text = "Read the dialogue and choose the customer's intent.\n\n{dialogue}"
    proposal_id = propose(db_url, project, text)
    other_id = propose(db_url, project, text + "\nBe brief.")

    response = client.post(f"/proposals/{proposal_id}/accept", json={"decided_by": "ana"})
    assert response.status_code == 200
    body = response.json()
    version = body["version"]
    assert (version["id"], version["source"], version["parent_id"], version["is_active"]) == (2, "agent", 1, True)
    assert version["text"] == text and version["author"] == "ana" and version["metrics"]["accuracy"]["after"] == 0.875
    assert body["model_version"] == f"prompt-2@{MODEL}"
    assert body["proposal"]["status"] == "accepted" and body["proposal"]["result_version_id"] == 2
    assert body["proposal"]["decided_by"] == "ana"

    history = client.get(f"/projects/{project}/prompts").json()
    assert [(v["id"], v["is_active"]) for v in history] == [(1, False), (2, True)]
    after = client.post("/predict", json=ls["predict_batch"]).json()["results"]
    assert {r["model_version"] for r in after} == {f"prompt-2@{MODEL}"}
    assert client.get("/versions", params={"project": project}).json()["versions"][0] == f"prompt-2@{MODEL}"
    with Session(db.sql_engine(db_url)) as session:
        stored = session.exec(select(Prediction).where(Prediction.model_version == f"prompt-2@{MODEL}")).all()
    assert len(stored) == len(after) and {p.prompt_version_id for p in stored} == {2}

    # decided proposals stay decided; accepting one supersedes the project's other pending proposals
    again = client.post(f"/proposals/{proposal_id}/accept")
    assert again.status_code == 409 and again.json()["detail"].endswith("it is accepted")
    superseded = client.post(f"/proposals/{other_id}/accept")
    assert superseded.status_code == 409 and "superseded" in superseded.json()["detail"]
    assert client.post(f"/proposals/{proposal_id}/reject", json={"reason": "too late"}).status_code == 409
    assert client.post("/proposals/999/accept").status_code == 404
    assert len(client.get(f"/projects/{project}/prompts").json()) == 2


@pytest.mark.databases
def test_two_concurrent_accepts_one_wins(client: TestClient, project: str, db_url: str) -> None:
    proposal_id = propose(db_url, project, "Choose the intent.\n{dialogue}")
    barrier = Barrier(2)

    def accept(_: int) -> int:
        barrier.wait()
        return client.post(f"/proposals/{proposal_id}/accept").status_code

    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(accept, range(2)))
    assert codes == [200, 409]
    history = client.get(f"/projects/{project}/prompts").json()
    assert [(v["source"], v["is_active"]) for v in history] == [("default", False), ("agent", True)]
    (proposal,) = client.get(f"/projects/{project}/proposals").json()
    assert proposal["status"] == "accepted" and proposal["result_version_id"] == history[1]["id"]


def test_reject_needs_a_reason(client: TestClient, project: str, db_url: str) -> None:
    proposal_id = propose(db_url, project, "Choose the intent.\n{dialogue}")
    for body in ({"reason": "   "}, {"reason": ""}, {}, None):
        response = client.post(f"/proposals/{proposal_id}/reject", json=body)
        assert response.status_code == 422, body
        assert body is None or "reason" in response.json()["detail"]
    assert client.get(f"/proposals/{proposal_id}").json()["status"] == "pending"

    response = client.post(f"/proposals/{proposal_id}/reject", json={"reason": "  drops the dialogue context "})
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["reason"]) == ("rejected", "drops the dialogue context")
    assert response.json()["decided_at"]
    assert client.post(f"/proposals/{proposal_id}/reject", json={"reason": "again"}).status_code == 409
    assert client.post(f"/proposals/{proposal_id}/accept").status_code == 409
    assert client.post("/proposals/999/reject", json={"reason": "x"}).status_code == 404
    assert [v["source"] for v in client.get(f"/projects/{project}/prompts").json()] == ["default"]


# -- refinement on demand ---------------------------------------------------------------------------


@pytest.fixture
def agent_worker(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    """The agent's worker over a stub engine that follows demonstrations, trying one cheap strategy."""
    engine = CopyEngine()
    worker = Worker(lambda: engine, lambda: Session(db.sql_engine(db_url)))
    monkeypatch.setattr(hooks, "_worker", worker)
    monkeypatch.setattr(settings.agent, "strategies", ["definitions"])
    yield worker
    worker.join(timeout=60)


def _annotate(db_url: str, project_id: str, n: int) -> None:
    with Session(db.sql_engine(db_url)) as session:
        repo.upsert_project(session, project_id, CONFIG)
        for i, (text, label) in enumerate(labeled()[:n], start=1):
            repo.upsert_annotation(
                session, AnnotationCreate(id=100 + i, project_id=project_id, task_id=i, choices={"intent": [label]})
            )
            remember_tasks(session, project_id, [{"id": i, "data": {"text": text}}])


def test_refine_on_demand(client: TestClient, db_url: str, agent_worker: Worker) -> None:
    assert client.post("/projects/7/refine").status_code == 404
    with Session(db.sql_engine(db_url)) as session:
        repo.upsert_project(session, "7", CONFIG)
    empty = client.post("/projects/7/refine")
    assert empty.status_code == 409 and "no annotated tasks" in empty.json()["detail"]

    _annotate(db_url, "7", 9)
    response = client.post("/projects/7/refine")
    assert response.status_code == 202
    run = response.json()
    assert (run["project_id"], run["trigger"], run["status"]) == ("7", "api", "running")
    assert agent_worker.join(timeout=120)
    (done,) = client.get("/projects/7/refinements").json()
    assert done["id"] == run["id"] and done["status"] == "done", done["error"]
    assert done["finished_at"] and done["summary"]["validation"] >= 1
    assert [c["strategy"] for c in done["summary"]["candidates"]] == ["definitions"]
    assert client.get("/projects/nope/refinements").status_code == 404


def test_refine_while_one_runs_is_409(client: TestClient, db_url: str, agent_worker: Worker) -> None:
    _annotate(db_url, "7", 4)
    with Session(db.sql_engine(db_url)) as session:
        held = start_run(session, "7", "start_training", lease_seconds=60).id
    busy = client.post("/projects/7/refine")
    assert busy.status_code == 409 and "already running" in busy.json()["detail"]
    runs = client.get("/projects/7/refinements").json()
    assert [(r["id"], r["status"], r["trigger"]) for r in runs] == [(held, "running", "start_training")]


# -- the page ---------------------------------------------------------------------------------------


def test_review_page_and_its_files(client: TestClient) -> None:
    for path in ("/review", "/review/1", "/review/cfg-0123abcd"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/static/review.js" defer></script>' in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
    script = client.get("/static/review.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/static/review.css").headers["content-type"].startswith("text/css")
    assert "http://" not in script.text and "https://" not in script.text  # nothing loads from elsewhere
    for name in ("review.html.bak", "..%2Fapp.py", "%2E%2E"):
        assert client.get(f"/static/{name}").status_code == 404


@pytest.fixture
def protected(db_url: str, tiny_engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(settings, "basic_auth_user", "ls")
    monkeypatch.setattr(settings, "basic_auth_pass", "s3cret")
    with TestClient(create_app(engine=tiny_engine), base_url=LOOPBACK) as c:
        yield c


def test_review_routes_need_credentials(protected: TestClient, ls: dict, db_url: str) -> None:
    protected.post("/setup", json=ls["setup"], auth=("ls", "s3cret"))
    proposal_id = propose(db_url, "1", "Choose the intent.\n{dialogue}")
    calls = [
        ("GET", "/review", None),
        ("GET", "/review/1", None),
        ("GET", "/static/review.js", None),
        ("GET", "/projects", None),
        ("GET", "/projects/1/prompts/diff?to=1", None),
        ("POST", "/projects/1/prompts/1/activate", None),
        ("GET", "/projects/1/proposals", None),
        ("GET", f"/proposals/{proposal_id}", None),
        ("POST", f"/proposals/{proposal_id}/accept", None),
        ("POST", f"/proposals/{proposal_id}/reject", {"reason": "no"}),
        ("POST", "/projects/1/refine", None),
        ("GET", "/projects/1/refinements", None),
    ]
    for method, path, body in calls:
        assert protected.request(method, path, json=body).status_code == 401, path
    assert protected.get(f"/proposals/{proposal_id}").status_code == 401
    accepted = protected.post(f"/proposals/{proposal_id}/accept", auth=("ls", "s3cret"))
    assert accepted.status_code == 200
    assert accepted.json()["proposal"]["decided_by"] == "ls"  # the basic-auth user when the body names no one


# -- what the page shows at the top ------------------------------------------------------------------


def test_activity_counts_links_and_never_the_token(client: TestClient, ls: dict, monkeypatch) -> None:
    from service.api import project_links

    monkeypatch.setattr(project_links, "_links", {})
    asked: list[tuple] = []
    monkeypatch.setattr(project_links, "fetch_title_soon", lambda *args: asked.append(args))
    token = "0123456789abcdef0123456789abcdef01234567"
    ls["setup"]["access_token"] = token
    assert client.post("/setup", json=ls["setup"]).status_code == 200
    assert asked == [("1", "http://localhost:8080", token)]  # used for the title, in the background
    before = client.get("/projects/1/activity").json()
    assert before["title"] is None and before["label_studio_url"] == "http://localhost:8080/projects/1/data"
    assert before["task_url"] == "http://localhost:8080/projects/1/data?task={task_id}"
    assert (before["annotations"], before["disagreements"], before["running"]) == (0, 0, None)
    assert before["disagreements_trigger"] == settings.agent.disagreements_trigger

    assert client.post("/webhook", json=ls["webhook_annotation_created"]).status_code == 200
    after = client.get("/projects/1/activity").json()
    assert after["title"] == "harness" and after["annotations"] == 1 and after["annotated_tasks"] == 1
    assert after["annotations_compared"] <= 1
    for path in ("/projects", "/projects/1", "/projects/1/activity", "/projects/1/prompts", "/projects/1/refinements"):
        assert token not in client.get(path).text
    assert client.get("/projects/nope/activity").status_code == 404


def test_a_proposal_diff_is_the_text_and_a_pool_summary(client: TestClient, project: str, db_url: str) -> None:
    pool = [
        {"task_id": 1, "text": "pay my bill", "labels": {"intent": ["PayBill"]}},
        {"task_id": 2, "text": "my car was hit", "labels": {"intent": ["FileClaim"]}},
    ]
    text = _prompt_text(client, project) + "\n\n{examples}"
    with Session(db.sql_engine(db_url)) as session:
        proposal = Proposal(
            project_id=project, base_version_id=1, strategy="retrieval", text=text,
            examples={"pool": pool, "k": 8}, metrics=evidence(),
        )  # fmt: skip
        session.add(proposal)
        session.commit()
        proposal_id = proposal.id
    detail = client.get(f"/proposals/{proposal_id}").json()
    assert "pay my bill" not in detail["diff"] and "+{examples}" in detail["diff"].splitlines()
    assert detail["pool"]["before"] == 0 and detail["pool"]["after"] == 2 and detail["pool"]["k_after"] == 8
    assert [e["task_id"] for e in detail["pool"]["added"]] == [1, 2] and detail["pool"]["removed"] == []
    assert detail["pool"]["labels_before"] == {} and detail["pool"]["labels_after"] == {"FileClaim": 1, "PayBill": 1}


def test_the_prompt_box_shows_the_instruction_never_placeholders(client: TestClient, project: str, db_url, ls) -> None:
    """An accepted retrieval prompt is echoed without ``{examples}`` and the task block; sent back unchanged
    with Shift+Enter, it is that version (with its demonstrations), not a new annotator prompt."""
    instruction = "Classify the customer's request."
    pool = [{"task_id": 9, "text": "user: pay my bill", "labels": {"intent": ["PayBill"]}}]
    with Session(db.sql_engine(db_url)) as session:
        template = f"{instruction}\n\n{{examples}}Chat:\n{{dialogue}}\n"
        proposal = Proposal(
            project_id=project, base_version_id=1, strategy="retrieval", text=template,
            examples={"pool": pool, "k": 1}, metrics=evidence(),
        )  # fmt: skip
        session.add(proposal)
        session.commit()
        proposal_id = proposal.id
    version = client.post(f"/proposals/{proposal_id}/accept", json={"decided_by": "lead"}).json()["version"]
    result = client.post("/predict", json=ls["predict_batch"]).json()["results"][0]
    [box] = [r for r in result["result"] if r["from_name"] == "prompt"]
    assert box["value"]["text"] == [instruction]

    ls["predict_interactive"]["params"]["context"]["result"][0]["value"]["text"] = [instruction]
    again = client.post("/predict", json=ls["predict_interactive"]).json()["results"][0]
    assert again["model_version"] == f"prompt-{version['id']}@{MODEL}"
    texts = [v["text"] for v in client.get(f"/projects/{project}/prompts").json()]
    assert instruction not in texts  # no new version from the echo
