"""A project's label tries and instruction prefix are warm before its first request."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from sqlmodel import Session

from constraints.local import LocalEngine
from service.labeling import parse_config
from service.prompting import build_query
from service.runtime import host
from service.runtime.warming import placeholder_task, warm_known_projects
from service.store import db, repo


def cached(engine: LocalEngine, project_id: str, db_url: str) -> tuple[bool, bool]:
    """(label set compiled, instruction prefix cached) for the project's active prompt."""
    with Session(db.sql_engine(db_url)) as session:
        project = repo.get_project(session, project_id)
        prompt = repo.active_prompt(session, project_id)
    schema = parse_config(project.label_config)
    control = schema.choices[0]
    query = build_query(prompt.text, schema, placeholder_task(schema)["data"], control)
    prefix = tuple(engine.prefix_ids(query))
    return control.label_set.key in engine._compiled, prefix in engine.scorer._prefixes


def wait_for_warmers() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("warm-"):
            thread.join(60)


def test_setup_warms_the_project(client: TestClient, ls: dict, tiny_engine: LocalEngine, db_url: str) -> None:
    tiny_engine.forget()
    assert client.post("/setup", json=ls["setup"]).status_code == 200
    wait_for_warmers()
    assert cached(tiny_engine, "1", db_url) == (True, True)


def test_activating_a_version_warms_it(client: TestClient, ls: dict, tiny_engine: LocalEngine, db_url: str) -> None:
    client.post("/setup", json=ls["setup"])
    wait_for_warmers()
    with Session(db.sql_engine(db_url)) as session:
        first = repo.active_prompt(session, "1")
        second = repo.record_prompt(session, "1", "Which intent is it? {labels}\n{text}", "user").id
        repo.activate_prompt(session, first.id)
    assert cached(tiny_engine, "1", db_url)[1] is True
    tiny_engine.forget()
    assert client.post(f"/projects/1/prompts/{second}/activate").status_code == 200
    wait_for_warmers()
    assert cached(tiny_engine, "1", db_url) == (True, True)


def test_start_warms_known_projects_before_ready(
    client: TestClient, ls: dict, tiny_engine: LocalEngine, db_url: str
) -> None:
    client.post("/setup", json=ls["setup"])
    client.post("/setup", json={**ls["setup"], "project": "2.1700000000"})
    wait_for_warmers()
    tiny_engine.forget()
    host.set_engine(None)
    host.start_loading(lambda: tiny_engine).join(60)
    assert host.state().state == "ready"
    assert cached(tiny_engine, "1", db_url) == (True, True)
    assert cached(tiny_engine, "2", db_url) == (True, True)
    tiny_engine.forget()
    assert warm_known_projects(tiny_engine, limit=1) == 1  # only the most recently updated


def test_a_repeated_setup_does_no_model_work(client: TestClient, ls: dict, tiny_engine: LocalEngine) -> None:
    """Label Studio calls /setup whenever the project's model settings are opened: only a change warms."""
    assert client.post("/setup", json=ls["setup"]).status_code == 200
    wait_for_warmers()
    calls: list[int] = []
    scored = tiny_engine.label_logprobs
    tiny_engine.label_logprobs = lambda queries, label_set: calls.append(len(queries)) or scored(queries, label_set)
    try:
        assert client.post("/setup", json=ls["setup"]).status_code == 200
        wait_for_warmers()
        assert calls == []
        changed = ls["setup"]["schema"].replace("AddDependent", "AddADependent")
        assert client.post("/setup", json={**ls["setup"], "schema": changed}).status_code == 200
        wait_for_warmers()
        labels = len(parse_config(changed).choices[0].label_set)
        assert calls == [1, labels]  # the placeholder task, then (once per prompt) the labels' model reference
    finally:
        del tiny_engine.label_logprobs
