"""The webhook hooks: corrections recorded in the background, refinement after N disagreements."""

from __future__ import annotations

from sqlmodel import Session, select

from agent import hooks
from agent.loop import Worker, list_runs
from service.runtime import events
from service.settings import settings
from service.store import db, repo
from service.store.models import AnnotationCreate, AnnotationPublic, Correction
from service.store.tasks import remember_tasks
from tests.agent.conftest import CONFIG, labeled


def test_events_record_corrections_and_trigger_a_refinement(db_url: str, stub_engine, monkeypatch) -> None:
    monkeypatch.setattr(settings.agent, "disagreements_trigger", 3)
    monkeypatch.setattr(settings.agent, "strategies", ["retrieval"])
    monkeypatch.setattr(settings.agent, "demos_k", 2)
    worker = Worker(lambda: stub_engine, lambda: Session(db.sql_engine(db_url)))
    hooks.install(worker)
    hooks.install(worker)  # idempotent
    assert events.on_annotation_saved.count(hooks.on_annotation_saved) == 1
    try:
        with Session(db.sql_engine(db_url)) as s:
            repo.upsert_project(s, "1", CONFIG)
            for i, (text, label) in enumerate(labeled()[:6], start=1):
                remember_tasks(s, "1", [{"id": i, "data": {"text": text}}])
                stored = repo.upsert_annotation(
                    s, AnnotationCreate(id=100 + i, project_id="1", task_id=i, choices={"intent": [label]})
                )
                events.emit_annotation_saved(AnnotationPublic.model_validate(stored))  # returns at once
        assert worker.join(120)
        with Session(db.sql_engine(db_url)) as s:
            corrections = s.exec(select(Correction)).all()
            assert len(corrections) == 6 and sum(not c.agree for c in corrections) == 4  # the stub says "loan"
            runs = list_runs(s, "1")
            assert runs and runs[-1].trigger == "disagreements" and runs[-1].status == "done"
        events.emit_annotations_deleted("1", [101, 102])
        assert worker.join(60)
        with Session(db.sql_engine(db_url)) as s:
            assert sorted(c.annotation_id for c in s.exec(select(Correction))) == [103, 104, 105, 106]
    finally:
        hooks.uninstall()
        hooks._worker = None
    assert hooks.on_annotation_saved not in events.on_annotation_saved


def test_annotations_left_without_corrections_are_recorded_once_the_model_is_ready(db_url: str, stub_engine) -> None:
    """A process killed after answering a webhook but before its agent job ran: the next start catches up."""
    from service.runtime import host

    worker = Worker(lambda: stub_engine, lambda: Session(db.sql_engine(db_url)))
    with Session(db.sql_engine(db_url)) as s:  # stored by the webhook; the agent never saw them
        repo.upsert_project(s, "1", CONFIG)
        for i, (text, label) in enumerate(labeled()[:4], start=1):
            remember_tasks(s, "1", [{"id": i, "data": {"text": text}}])
            repo.upsert_annotation(
                s, AnnotationCreate(id=200 + i, project_id="1", task_id=i, choices={"intent": [label]})
            )
        assert len(hooks.uncorrected_annotations(s)) == 4
    hooks.install(worker)
    try:
        host.start_loading(lambda: stub_engine).join(60)  # the restart: ready, then the catch-up
        assert worker.join(120)
        with Session(db.sql_engine(db_url)) as s:
            assert sorted(c.annotation_id for c in s.exec(select(Correction))) == [201, 202, 203, 204]
            assert hooks.uncorrected_annotations(s) == []
        assert hooks.catch_up() == 0  # nothing left, nothing recorded twice
    finally:
        hooks.uninstall()
        hooks._worker = None


def test_a_correction_uses_the_stored_annotation_not_the_event_copy(db_url: str, stub_engine) -> None:
    """An UPDATED that reached another replica first must not be undone by a late CREATED event."""
    worker = Worker(lambda: stub_engine, lambda: Session(db.sql_engine(db_url)))
    hooks.install(worker)
    try:
        with Session(db.sql_engine(db_url)) as s:
            repo.upsert_project(s, "1", CONFIG)
            text, label = next((t, x) for t, x in labeled() if x != "loan")
            remember_tasks(s, "1", [{"id": 1, "data": {"text": text}}])
            old = AnnotationPublic.model_validate(
                repo.upsert_annotation(
                    s, AnnotationCreate(id=301, project_id="1", task_id=1, choices={"intent": ["loan"]})
                )
            )
            repo.upsert_annotation(s, AnnotationCreate(id=301, project_id="1", task_id=1, choices={"intent": [label]}))
        events.emit_annotation_saved(old)  # the stale copy arrives last
        assert worker.join(60)
        with Session(db.sql_engine(db_url)) as s:
            (correction,) = s.exec(select(Correction)).all()
            assert correction.gold == [label]
    finally:
        hooks.uninstall()
        hooks._worker = None
