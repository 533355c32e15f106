"""One decision path: `/predict` and `prompter label` give the same tasks the same labels and scores under an
accepted retrieval prompt (a prompt version with a demonstration pool), and both differ from the same template
without its pool (so the pool is really used by both)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session

from agent import review
from service.demonstrations import compose
from service.labeling import parse_config
from service.offline import label
from service.offline.tasks_io import labels_config, source_digest
from service.predictor import Prompt, label_tasks
from service.projects import ensure_prompt
from service.prompting import default_prompt
from service.store import db, repo
from service.store.models import Proposal

LABELS = ["loan", "card", "credit card"]
POOL_TEXTS = [
    ("I need to borrow money for a car", "loan"),
    ("my debit card never arrived", "card"),
    ("raise my credit card limit", "credit card"),
    ("can I get a mortgage", "loan"),
    ("my card was stolen", "card"),
    ("credit card interest rate", "credit card"),
]
TASKS = ["a loan for my new house", "the card machine ate my card", "what is my credit card balance", "lend me cash"]


def _accepted_retrieval_version(session: Session, project_id: str, config: str) -> int:
    schema = parse_config(config)
    repo.upsert_project(session, project_id, config)
    pool = [
        {"task_id": 100 + i, "text": text, "labels": {"label": [gold]}} for i, (text, gold) in enumerate(POOL_TEXTS)
    ]
    base = ensure_prompt(session, project_id, schema)
    text = compose(default_prompt(schema), schema, retrieval=True)
    proposal = Proposal(
        project_id=project_id, base_version_id=base.id, strategy="retrieval", text=text, examples={"pool": pool, "k": 3}
    )
    session.add(proposal)
    session.commit()
    return review.accept_proposal(session, proposal.id, decided_by="reviewer").id


def test_predict_and_prompter_label_decide_alike_with_a_retrieval_pool(
    client: TestClient, db_url: str, tiny_engine, tmp_path: Path
) -> None:
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps({"id": i + 1, "text": t}) + "\n" for i, t in enumerate(TASKS)))
    config = labels_config(LABELS)
    project_id = f"file-{source_digest(data, config)}"  # the project `prompter label` files the run under
    with Session(db.sql_engine(db_url)) as session:
        version_id = _accepted_retrieval_version(session, project_id, config)

    out = tmp_path / "out.json"
    db_path = db_url.removeprefix("sqlite:///")
    args = ["--input", str(data), "--labels", ",".join(LABELS), "--out", str(out), "--db", db_path, "--no-progress"]
    assert label.main(args, tiny_engine) == 0
    offline = {t["id"]: t["predictions"][0] for t in json.loads(out.read_text())}

    tasks = [{"id": i + 1, "data": {"text": t}} for i, t in enumerate(TASKS)]
    response = client.post("/predict", json={"project": f"{project_id}", "label_config": config, "tasks": tasks})
    assert response.status_code == 200, response.text
    served = response.json()["results"]

    for task, result in zip(tasks, served, strict=True):
        mine = offline[task["id"]]
        assert result["model_version"] == mine["model_version"] == f"prompt-{version_id}@{tiny_engine.model_id}"
        assert result["result"] == mine["result"]
        assert abs(result["score"] - mine["score"]) < 1e-6

    # the pool matters: the same template without it scores differently, so neither path ignored it
    schema = parse_config(config)
    with Session(db.sql_engine(db_url)) as session:
        version = repo.active_prompt(session, project_id)
    bare = label_tasks(tiny_engine, schema, tasks, Prompt(version.text))
    assert any(abs(b.score - r["score"]) > 1e-6 for b, r in zip(bare, served, strict=True))
