"""A Labels annotation is a correction per control: span keys, exact agreement, overlap agreement."""

from __future__ import annotations

from sqlmodel import Session

from agent.corrections import record_corrections, span_agreement
from service.labeling import labels_config, parse_config
from service.prompting import default_prompt
from service.store import repo
from service.store.models import AnnotationCreate, PredictionCreate
from service.versions import model_version

CONFIG = labels_config(["date", "time"], "slots", choices=["book", "cancel"])


def _region(start: int, end: int, label: str, text: str) -> dict:
    value = {"start": start, "end": end, "text": text, "labels": [label]}
    return {"from_name": "slots", "to_name": "text", "type": "labels", "value": value}


def test_span_annotation_is_recorded_with_exact_and_partial_agreement(session: Session, tiny_engine) -> None:
    schema = parse_config(CONFIG)
    repo.upsert_project(session, "1", CONFIG)
    version = repo.record_prompt(session, "1", default_prompt(schema), "default")
    mv = model_version(version.id, tiny_engine.model_id)
    predicted = {"slots": ["3:11:date", "15:19:time"], "intent": ["book"]}
    repo.save_predictions(
        session,
        [PredictionCreate(project_id="1", task_id=4, prompt_version_id=version.id, model_version=mv, labels=predicted)],
    )
    result = [
        _region(3, 11, "date", "tomorrow"),
        _region(15, 22, "time", "7 p.m. x"),
        {"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": ["book"]}},
    ]
    annotation = AnnotationCreate(id=9, project_id="1", task_id=4, choices={"intent": ["book"]}, result=result)
    rows = record_corrections(session, tiny_engine, schema, "1", repo.upsert_annotation(session, annotation))
    by_control = {r.control: r for r in rows}
    assert by_control["intent"].agree is True
    spans = by_control["slots"]
    assert spans.gold == ["3:11:date", "15:22:time"] and spans.predicted == ["3:11:date", "15:19:time"]
    assert spans.agree is False
    agreement = span_agreement(spans)
    assert agreement == {"exact_f1": 0.5, "partial_f1": 1.0}
