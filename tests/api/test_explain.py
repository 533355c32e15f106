"""The response TextArea says why (service/explain.py): labels with probabilities, the runner-up, the nearest
annotated task, and this prompt's measured accuracy against the active prompt's; free text only by setting."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from service import fusion
from service.labeling import parse_config
from service.prompting import task_text
from service.settings import settings
from service.store import db, repo
from service.store.models import AnnotationCreate, EvaluationCreate

TYPED = "Classify the customer's intent."


def _response(result: dict) -> str:
    (region,) = [r for r in result["result"] if r["from_name"] == "response"]
    assert region["type"] == "textarea" and region["to_name"] == "chat"
    return region["value"]["text"][0]


def _choices(result: dict) -> list[str]:
    return next(r["value"]["choices"] for r in result["result"] if r["from_name"] == "intent")


def _annotate(session: Session, task_ids: list[int], label: str) -> None:
    for task_id in task_ids:
        repo.upsert_annotation(
            session, AnnotationCreate(id=1000 + task_id, project_id="1", task_id=task_id, choices={"intent": [label]})
        )


def _evaluation(version_id: int, accuracy: float, tasks: int) -> EvaluationCreate:
    return EvaluationCreate(
        project_id="1",
        prompt_version_id=version_id,
        run_id="test",
        model_version=f"prompt-{version_id}@test/tiny-gemma3",
        source="annotations",
        control="intent",
        tasks=tasks,
        accuracy=accuracy,
        macro_f1=accuracy,
        micro_f1=accuracy,
        ece=0.05,
    )


def test_without_annotations_the_response_explains_the_labels_and_says_there_is_nothing_to_measure(
    client: TestClient, ls: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "response_max_tokens", 16)  # explain mode ignores it: no free text is generated
    client.post("/setup", json=ls["setup"])
    (result,) = client.post("/predict", json=ls["predict_interactive"]).json()["results"]
    text = _response(result)
    lines = text.splitlines()
    chosen = _choices(result)
    assert lines[0].startswith("intent: ")
    for label in chosen:  # every chosen label, with a percentage
        assert re.search(rf"\b{label} \d+%", lines[0]), lines[0]
    (control,) = parse_config(ls["setup"]["schema"], settings.prompt_prefix, settings.response_name).choices
    assert control.label_set.multiple  # the captured llm_interactive config: each label applies or not
    threshold = f"(chosen from {100 * fusion.DEFAULT_MULTI.threshold:.0f}%)"  # a fresh project's defaults
    assert threshold in lines[0], lines[0]
    runner = re.search(r"highest not chosen (\w+) (\d+)%", lines[0])
    assert runner and runner.group(1) not in chosen
    assert lines[1] == "nearest annotated task: none yet (no corrections in this prompt's pool)"
    assert lines[2] == "no annotated tasks to measure this prompt against yet"
    assert len(lines) == 3  # nothing else: not the model's free text


def test_the_response_names_the_nearest_annotated_task_behind_the_decision(
    client: TestClient, ls: dict, db_url: str
) -> None:
    client.post("/setup", json=ls["setup"])
    schema = parse_config(ls["predict_interactive"]["label_config"], settings.prompt_prefix, settings.response_name)
    task = ls["predict_interactive"]["tasks"][0]
    same = task_text(schema, task["data"], "chat")
    pool = [
        {"task_id": 41, "text": same, "labels": {"intent": ["CancelAutomaticBilling"]}},
        {"task_id": 42, "text": "customer: I want to add my son to my policy.", "labels": {"intent": ["AddDependent"]}},
    ]
    with Session(db.sql_engine(db_url)) as session:
        active = repo.active_prompt(session, "1")
        active.examples = {"pool": pool, "k": 2}
        session.add(active)
        session.commit()
        _annotate(session, [41, 42], "CancelAutomaticBilling")
    (result,) = client.post("/predict", json=ls["predict_interactive"]).json()["results"]
    nearest = _response(result).splitlines()[1]
    chosen = set(_choices(result))
    # the nearest entry carrying a chosen label, else the nearest of all (the task's own text, #41)
    expected = "#42 (AddDependent)" if chosen & {"AddDependent"} and not chosen & {"CancelAutomaticBilling"} else None
    if expected is None:
        assert nearest == "nearest annotated task: #41 (CancelAutomaticBilling), similarity 1.00", nearest
    else:
        assert nearest.startswith(f"nearest annotated task: {expected}"), nearest


def test_a_measured_prompt_is_compared_with_the_active_prompt(client: TestClient, ls: dict, db_url: str) -> None:
    client.post("/setup", json=ls["setup"])
    first = client.post("/predict", json=ls["predict_interactive"]).json()["results"][0]
    with Session(db.sql_engine(db_url)) as session:
        _annotate(session, list(range(100, 220)), "PayBill")
        typed = repo.find_prompt(session, "1", TYPED)
        active = repo.active_prompt(session, "1")
        assert typed is not None and active is not None and typed.id != active.id
        assert _response(first).splitlines()[-1] == "no annotated tasks to measure this prompt against yet"
        repo.save_evaluations(session, [_evaluation(active.id, 0.79, 120), _evaluation(typed.id, 0.84, 120)])
    (result,) = client.post("/predict", json=ls["predict_interactive"]).json()["results"]
    assert _response(result).splitlines()[-1] == "this prompt: 84% on 120 annotated tasks; active prompt: 79%"
    # the same figures seen from the active prompt (no Shift+Enter prompt: a single-task /predict)
    body = ls["predict_interactive"] | {"params": {}}
    (own,) = client.post("/predict", json=body).json()["results"]
    assert _response(own).splitlines()[-1] == "this prompt (active): 79% on 120 annotated tasks"


def test_an_unmeasured_prompt_says_so_next_to_the_active_figures(client: TestClient, ls: dict, db_url: str) -> None:
    client.post("/setup", json=ls["setup"])
    with Session(db.sql_engine(db_url)) as session:
        _annotate(session, [1, 2, 3], "PayBill")
        repo.save_evaluations(session, [_evaluation(repo.active_prompt(session, "1").id, 0.5, 2)])
    (result,) = client.post("/predict", json=ls["predict_interactive"]).json()["results"]
    line = _response(result).splitlines()[-1]
    assert line == "this prompt: not measured yet (3 annotated tasks); active prompt: 50% on 2"


def test_generate_mode_writes_the_models_free_text_and_both_mode_adds_the_explanation(
    client: TestClient, ls: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "response_max_tokens", 3)
    monkeypatch.setattr(settings, "response_mode", "generate")
    client.post("/setup", json=ls["setup"])
    (generated,) = client.post("/predict", json=ls["predict_interactive"]).json()["results"]
    free_text = _response(generated)
    assert free_text.strip() and "runner-up" not in free_text and "annotated" not in free_text
    monkeypatch.setattr(settings, "response_mode", "both")
    (both,) = client.post("/predict", json=ls["predict_interactive"]).json()["results"]
    text = _response(both)
    head, _, explanation = text.partition("\n\n")
    assert head == free_text.strip()  # the same prompt, task and model: the same greedy answer
    assert explanation.startswith("intent: ") and explanation.endswith(
        "no annotated tasks to measure this prompt against yet"
    )


def test_bulk_predictions_get_no_response_unless_configured(client: TestClient, ls: dict) -> None:
    results = client.post("/predict", json=ls["predict_batch"]).json()["results"]
    assert all(r["from_name"] != "response" for result in results for r in result["result"])


MULTI = """<View><Text name="text" value="$text"/>
<Choices name="intents" toName="text" choice="multiple">
<Choice value="a"/><Choice value="b"/><Choice value="c"/></Choices>
</View>"""


def test_a_multi_label_line_states_the_threshold_its_labels_were_chosen_from() -> None:
    from service.explain import decision_line

    (control,) = parse_config(MULTI, settings.prompt_prefix, settings.response_name).choices
    probs = {"a": 0.91, "b": 0.40, "c": 0.12}
    assert decision_line(control, ["a", "b"], probs, 0.25) == (
        "intents: a 91%, b 40% (chosen from 25%); highest not chosen c 12%"
    )
    none = decision_line(control, [], probs, 0.95)
    assert none == "intents: no label chosen (chosen from 95%); highest not chosen a 91%"
    (single,) = parse_config(MULTI.replace(' choice="multiple"', ""), settings.prompt_prefix, "response").choices
    assert decision_line(single, ["a"], probs, 0.5) == "intents: a 91%; runner-up b 40%"  # no threshold said
