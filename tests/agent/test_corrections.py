"""Corrections pair an annotation with the prediction made under the version in force."""

from __future__ import annotations

from sqlmodel import Session, select

from agent.corrections import list_corrections, new_disagreements, record_corrections, withdraw
from service.prompting import default_prompt
from service.store import repo
from service.store.models import AnnotationCreate, Correction, Prediction, PredictionCreate
from service.store.tasks import annotated_tasks, remember_tasks
from service.versions import model_version
from tests.agent.conftest import CONFIG


def annotate(session: Session, annotation_id: int, task_id: int, choices: dict) -> object:
    return repo.upsert_annotation(
        session, AnnotationCreate(id=annotation_id, project_id="1", task_id=task_id, choices=choices)
    )


def test_pairs_with_the_stored_prediction_of_the_active_version(session: Session, schema, stub_engine) -> None:
    repo.upsert_project(session, "1", CONFIG)
    version = repo.record_prompt(session, "1", default_prompt(schema), "default")
    mv = model_version(version.id, stub_engine.model_id)
    repo.save_predictions(
        session,
        [
            PredictionCreate(project_id="1", task_id=7, prompt_version_id=version.id, model_version=mv,
                             labels={"intent": ["card"]}),
            PredictionCreate(project_id="1", task_id=7, prompt_version_id=version.id, model_version="prompt-1@other",
                             labels={"intent": ["loan"]}),
        ],
    )  # fmt: skip
    agreed = record_corrections(session, stub_engine, schema, "1", annotate(session, 1, 7, {"intent": ["card"]}))
    assert [(c.control, c.gold, c.predicted, c.agree) for c in agreed] == [("intent", ["card"], ["card"], True)]
    assert agreed[0].prompt_version_id == version.id and agreed[0].model_version == mv
    assert stub_engine.calls == 0  # the stored prediction was used, the model was not asked

    corrected = record_corrections(
        session, stub_engine, schema, "1", annotate(session, 2, 7, {"intent": ["credit card"]})
    )
    assert [(c.gold, c.predicted, c.agree) for c in corrected] == [(["credit card"], ["card"], False)]
    assert new_disagreements(session, "1", after_id=0) == 1


def test_computes_and_stores_a_prediction_when_none_exists(session: Session, schema, stub_engine) -> None:
    repo.upsert_project(session, "1", CONFIG)
    task = {"id": 3, "data": {"text": "raise my credit card limit"}}
    rows = record_corrections(
        session, stub_engine, schema, "1", annotate(session, 5, 3, {"intent": ["credit card"]}), task=task
    )
    assert stub_engine.calls == 2  # the task, and (once per prompt) the labels' model reference
    [row] = rows
    assert row.gold == ["credit card"] and row.agree == (row.predicted == ["credit card"])
    stored = session.exec(select(Prediction).where(Prediction.task_id == 3)).one()
    assert stored.labels == {"intent": row.predicted} and stored.prompt_version_id == row.prompt_version_id
    assert [t.task_id for t in annotated_tasks(session, "1", schema)] == [3]


def test_update_replaces_and_delete_withdraws(session: Session, schema, stub_engine) -> None:
    repo.upsert_project(session, "1", CONFIG)
    remember_tasks(session, "1", [{"id": 3, "data": {"text": "lost my card"}}, {"id": 4, "data": {"text": "a loan"}}])
    first = record_corrections(session, stub_engine, schema, "1", annotate(session, 5, 3, {"intent": ["card"]}))
    again = record_corrections(session, stub_engine, schema, "1", annotate(session, 5, 3, {"intent": ["loan"]}))
    assert first[0].id == again[0].id and again[0].gold == ["loan"]  # one row per (annotation, control), replaced
    assert again[0].predicted == first[0].predicted and again[0].agree == (again[0].predicted == ["loan"])
    record_corrections(session, stub_engine, schema, "1", annotate(session, 6, 4, {"intent": ["card"]}))
    assert len(list_corrections(session, "1")) == 2
    assert withdraw(session, [5, 999]) == 1
    assert [c.annotation_id for c in session.exec(select(Correction))] == [6]
    assert withdraw(session, []) == 0


def test_nothing_recorded_without_task_data_or_answered_control(session: Session, schema, stub_engine) -> None:
    repo.upsert_project(session, "1", CONFIG)
    assert record_corrections(session, stub_engine, schema, "1", annotate(session, 8, 9, {"intent": ["card"]})) == []
    assert record_corrections(session, stub_engine, schema, "1", annotate(session, 9, 9, {"other": ["x"]})) == []
    assert stub_engine.calls == 0
