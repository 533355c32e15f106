"""The store: migrations build the schema the models describe; repo functions keep their invariants."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from constraints.errors import NotFound
from service.store import db, repo
from service.store.models import AnnotationCreate, EvaluationCreate, Prediction, PredictionCreate

pytestmark = pytest.mark.databases  # every test using db_url runs on SQLite and on PostgreSQL

TABLES = {"project", "prompt_version", "prediction", "annotation", "alembic_version"}
AGENT_TABLES = {"task_data", "correction", "refinement_run", "proposal"}  # migration 0002 (service/store/models.py)
EVAL_TABLES = {"evaluation"}  # migration 0003


def test_migration_creates_schema(db_url: str) -> None:
    inspector = sa.inspect(db.sql_engine(db_url))
    assert set(inspector.get_table_names()) == TABLES | AGENT_TABLES | EVAL_TABLES
    columns = {c["name"] for c in inspector.get_columns("prediction")}
    assert {"project_id", "task_id", "model_version", "labels", "result", "score", "latency_s"} <= columns
    uniques = inspector.get_unique_constraints("prediction")
    assert [u["column_names"] for u in uniques] == [["project_id", "task_id", "model_version"]]
    with db.sql_engine(db_url).connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0006"
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migration_is_idempotent(db_url: str, session: Session) -> None:
    repo.upsert_project(session, "3", "<View/>")
    db.migrate(db_url)
    db.migrate(db_url)
    with Session(db.sql_engine(db_url)) as fresh:
        assert repo.get_project(fresh, "3").label_config == "<View/>"


def test_models_match_migrated_schema(db_url: str) -> None:
    with db.sql_engine(db_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_evaluation_migration_downgrades_and_upgrades_again(db_url: str) -> None:
    with Session(db.sql_engine(db_url)) as session:  # closed before the downgrade: PostgreSQL would wait for it
        repo.upsert_project(session, "3", "<View/>")
    engine = db.sql_engine(db_url)
    config = db.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    assert "evaluation" not in sa.inspect(engine).get_table_names()
    db.migrate(db_url)
    assert "evaluation" in sa.inspect(engine).get_table_names()
    with Session(engine) as session:
        assert repo.get_project(session, "3") is not None


def test_live_evaluation_migration_keeps_prompter_eval_rows_and_drops_failures_on_the_way_down(db_url: str) -> None:
    with Session(db.sql_engine(db_url)) as session:
        version = repo.record_prompt(session, "1", "Classify the intent.", "default")
        ok, failed = _evaluation("1", version.id, "a", 0.5), _evaluation("1", version.id, "b", 0.5)
        failed = failed.model_copy(update={"accuracy": None, "status": "failed", "reason": "engine down"})
        repo.save_evaluations(session, [ok, failed])
        version_id = version.id
    engine = db.sql_engine(db_url)
    config = db.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    with engine.connect() as conn:  # a failed live evaluation has no figures for the old schema: gone
        assert conn.execute(sa.text("SELECT run_id, accuracy FROM evaluation")).all() == [("a", 0.5)]
    db.migrate(db_url)
    with Session(engine) as session:
        (row,) = repo.list_evaluations(session, version_id)
        assert (row.trigger, row.status, row.fixes, row.breaks, row.compared_with_id) == ("cli", "ok", [], [], None)
        assert repo.count_evaluations(session) == {"ok": 1}


def test_one_active_version_migration_keeps_the_newest_and_then_refuses_two(db_url: str) -> None:
    engine = db.sql_engine(db_url)
    config = db.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    with engine.begin() as conn:  # what a race before the project lock could leave behind
        conn.execute(
            sa.text("INSERT INTO project (id, label_config, created_at, updated_at) VALUES ('7', '<View/>', :t, :t)"),
            {"t": datetime.now(UTC)},
        )
        for text in ("a", "b", "c"):
            conn.execute(
                sa.text(
                    "INSERT INTO prompt_version (project_id, text, source, is_active, created_at)"
                    " VALUES ('7', :text, 'user', :on, :t)"
                ),
                {"text": text, "on": True, "t": datetime.now(UTC)},
            )
    db.migrate(db_url)
    with Session(engine) as session:
        versions = repo.list_prompt_versions(session, "7")
        assert [v.is_active for v in versions] == [False, False, True]
        repo.activate_prompt(session, versions[0].id)  # rolling back to an older id works with the index
        assert repo.active_prompt(session, "7").id == versions[0].id
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE prompt_version SET is_active = :on WHERE project_id = '7'"), {"on": True})


def test_migrate_works_on_a_fresh_file_without_ini(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'other.sqlite3'}"
    db.migrate(url)
    assert "prompt_version" in sa.inspect(db.sql_engine(url)).get_table_names()
    db.dispose_engine()


def test_upsert_project_updates_config(session: Session) -> None:
    first = repo.upsert_project(session, "7", "<View>a</View>")
    created = first.updated_at
    again = repo.upsert_project(session, "7", "<View>b</View>")
    assert again.label_config == "<View>b</View>"
    assert again.updated_at >= created
    assert repo.upsert_project(session, "7").label_config == "<View>b</View>"  # None keeps the config
    assert repo.get_project(session, "nope") is None


def test_record_prompt_dedupes_and_first_becomes_active(session: Session) -> None:
    repo.upsert_project(session, "1", "<View/>")
    assert repo.active_prompt(session, "1") is None
    default = repo.record_prompt(session, "1", "Classify the intent.", "default")
    assert default.is_active
    same = repo.record_prompt(session, "1", "  Classify the intent.\n", "annotator", author="5")
    assert same.id == default.id
    assert same.source == "default"  # the first recording wins
    other = repo.record_prompt(session, "1", "Pick the intent.", "annotator", parent_id=default.id)
    assert other.id != default.id
    assert not other.is_active
    assert other.parent_id == default.id
    assert repo.active_prompt(session, "1").id == default.id
    assert [v.id for v in repo.list_prompt_versions(session, "1")] == [default.id, other.id]


def test_record_prompt_is_per_project_and_creates_the_project(session: Session) -> None:
    a = repo.record_prompt(session, "1", "Same text", "user")
    b = repo.record_prompt(session, "2", "Same text", "user")
    assert a.id != b.id
    assert b.is_active
    assert repo.get_project(session, "2") is not None


def test_record_prompt_rejects_bad_input(session: Session) -> None:
    with pytest.raises(ValueError, match="source"):
        repo.record_prompt(session, "1", "x", "robot")
    with pytest.raises(ValueError, match="empty"):
        repo.record_prompt(session, "1", "   ", "user")


def test_activate_prompt_keeps_exactly_one_active(session: Session) -> None:
    v1 = repo.record_prompt(session, "1", "one", "default")
    v2 = repo.record_prompt(session, "1", "two", "agent")
    v3 = repo.record_prompt(session, "1", "three", "user", activate=True)
    assert repo.active_prompt(session, "1").id == v3.id
    repo.activate_prompt(session, v2.id)
    active = [v.id for v in repo.list_prompt_versions(session, "1") if v.is_active]
    assert active == [v2.id]
    again = repo.record_prompt(session, "1", "one", "annotator", activate=True)
    assert again.id == v1.id
    assert [v.id for v in repo.list_prompt_versions(session, "1") if v.is_active] == [v1.id]
    with pytest.raises(NotFound):
        repo.activate_prompt(session, 999)


def _row(task_id: int | None, label: str, version: str, prompt_id: int) -> PredictionCreate:
    return PredictionCreate(
        project_id="1",
        task_id=task_id,
        prompt_version_id=prompt_id,
        model_version=version,
        labels={"intent": [label]},
        result=[{"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": [label]}}],
        score=0.5,
        latency_s=0.01,
    )


def test_save_predictions_upserts_on_task_and_version(session: Session) -> None:
    v = repo.record_prompt(session, "1", "p", "default")
    repo.save_predictions(session, [_row(1, "A", "prompt-1@m", v.id), _row(2, "B", "prompt-1@m", v.id)])
    repo.save_predictions(session, [_row(1, "C", "prompt-1@m", v.id)])
    repo.save_predictions(session, [_row(1, "D", "prompt-2@m", v.id)])
    rows = session.exec(select(Prediction).order_by(Prediction.task_id, Prediction.model_version)).all()
    assert [(r.task_id, r.model_version, r.labels["intent"]) for r in rows] == [
        (1, "prompt-1@m", ["C"]),
        (1, "prompt-2@m", ["D"]),
        (2, "prompt-1@m", ["B"]),
    ]
    assert rows[0].result[0]["value"]["choices"] == ["C"]
    assert repo.list_model_versions(session, "1")[0] == "prompt-2@m"
    assert set(repo.list_model_versions(session)) == {"prompt-1@m", "prompt-2@m"}


def test_save_predictions_without_task_id_appends(session: Session) -> None:
    v = repo.record_prompt(session, "1", "p", "default")
    repo.save_predictions(session, [_row(None, "A", "mv", v.id), _row(None, "B", "mv", v.id)])
    assert len(session.exec(select(Prediction)).all()) == 2


def test_failed_save_keeps_earlier_rows(session: Session) -> None:
    v = repo.record_prompt(session, "1", "p", "default")
    repo.save_predictions(session, [_row(1, "A", "mv", v.id)])
    with pytest.raises(sa.exc.IntegrityError):
        repo.save_predictions(session, [_row(2, "B", "mv", v.id), _row(3, "C", "mv", 12345)])  # bad FK
    session.rollback()
    rows = session.exec(select(Prediction)).all()
    assert [(r.task_id, r.labels["intent"]) for r in rows] == [(1, ["A"])]


def _annotation(ann_id: int, label: str, **extra) -> AnnotationCreate:
    return AnnotationCreate(
        id=ann_id,
        project_id="4",
        task_id=10,
        choices={"intent": [label]},
        result=[{"type": "choices", "value": {"choices": [label]}}],
        **extra,
    )


def test_upsert_and_delete_annotations(session: Session) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    repo.upsert_annotation(session, _annotation(1, "A", prompt_text="Classify", ls_created_at=when))
    repo.upsert_annotation(session, _annotation(2, "B", completed_by=3, lead_time=4.5))
    updated = repo.upsert_annotation(session, _annotation(1, "C"))
    assert updated.choices == {"intent": ["C"]}
    assert updated.prompt_text is None
    stored = repo.list_annotations(session, "4")
    assert [(a.id, a.choices["intent"][0]) for a in stored] == [(1, "C"), (2, "B")]
    assert stored[1].completed_by == 3 and stored[1].lead_time == 4.5
    assert repo.get_project(session, "4") is not None  # created as a placeholder
    assert repo.delete_annotations(session, [1, 99]) == 1
    assert repo.delete_annotations(session, []) == 0
    assert [a.id for a in repo.list_annotations(session, "4")] == [2]


def test_a_late_stale_annotation_copy_does_not_replace_a_newer_one(session: Session) -> None:
    """Webhooks can arrive out of order (retries, two replicas): Label Studio's updated_at decides."""
    older, newer = datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 1, 3, tzinfo=UTC)
    repo.upsert_annotation(session, _annotation(7, "NEW", ls_updated_at=newer))
    kept = repo.upsert_annotation(session, _annotation(7, "OLD", ls_updated_at=older))
    assert kept.choices == {"intent": ["NEW"]}
    again = repo.upsert_annotation(session, _annotation(7, "NEWER", ls_updated_at=newer))  # same stamp: replaces
    assert again.choices == {"intent": ["NEWER"]}
    unstamped = repo.upsert_annotation(session, _annotation(7, "PLAIN"))  # no stamp: nothing to compare
    assert unstamped.choices == {"intent": ["PLAIN"]}
    assert [a.choices["intent"] for a in repo.list_annotations(session, "4")] == [["PLAIN"]]


def test_save_predictions_same_key_twice_in_one_batch_keeps_the_last(session: Session) -> None:
    v = repo.record_prompt(session, "1", "p", "default")
    saved = repo.save_predictions(
        session, [_row(1, "A", "mv", v.id), _row(2, "B", "mv", v.id), _row(1, "C", "mv", v.id)]
    )
    assert [p.labels["intent"] for p in saved] == [["C"], ["B"], ["C"]]
    assert saved[0].id == saved[2].id
    rows = session.exec(select(Prediction).order_by(Prediction.task_id)).all()
    assert [(r.task_id, r.labels["intent"]) for r in rows] == [(1, ["C"]), (2, ["B"])]


def test_concurrent_saves_of_one_task_keep_one_row(db_url: str, session: Session) -> None:
    """Two writers (two replicas, say) storing the same task and model version at once: no error, one row."""
    v = repo.record_prompt(session, "1", "p", "default")
    rounds, barrier, errors = 15, threading.Barrier(2), []

    def writer(label: str) -> None:
        with Session(db.sql_engine(db_url)) as own:
            for task in range(rounds):
                barrier.wait(timeout=30)
                try:
                    repo.save_predictions(own, [_row(task, label, "mv", v.id)])
                except Exception as exc:  # collected, asserted below
                    errors.append(exc)
                    own.rollback()

    threads = [threading.Thread(target=writer, args=(label,)) for label in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    rows = session.exec(select(Prediction).order_by(Prediction.task_id)).all()
    assert [r.task_id for r in rows] == list(range(rounds))
    assert all(r.labels["intent"][0] in {"A", "B"} for r in rows)


def test_portable_save_path_replaces_like_the_upsert(session: Session) -> None:
    """Databases without ON CONFLICT take the look-up path; it keeps the same contract."""
    v = repo.record_prompt(session, "1", "p", "default")
    first = [{**_row(1, "A", "mv", v.id).model_dump(), "created_at": datetime.now(UTC)}]
    again = [{**_row(1, "B", "mv", v.id).model_dump(), "created_at": datetime.now(UTC)}]
    repo._save_predictions_by_lookup(session, first)
    saved = repo._save_predictions_by_lookup(session, again)
    assert [(p.task_id, p.labels["intent"]) for p in saved] == [(1, ["B"])]
    assert len(session.exec(select(Prediction)).all()) == 1


def _evaluation(project_id: str, version_id: int, run_id: str, accuracy: float) -> EvaluationCreate:
    return EvaluationCreate(
        project_id=project_id,
        prompt_version_id=version_id,
        run_id=run_id,
        model_version=f"prompt-{version_id}@tiny",
        source="file gold.jsonl",
        control="intent",
        tasks=4,
        accuracy=accuracy,
        macro_f1=accuracy / 2,
        micro_f1=accuracy,
        ece=0.125,
        per_label={"loan": {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1, "predicted": 2}},
        confusion={"labels": ["loan", "card"], "matrix": [[1, 0], [1, 2]]},
        reliability=[{"low": 0.0, "high": 1.0, "count": 4, "confidence": 0.6, "accuracy": accuracy}],
        coverage=[{"threshold": 0.3, "coverage": 1.0, "accuracy": accuracy, "kept": 4}],
    )


def test_evaluations_newest_first_and_latest_per_version(session: Session) -> None:
    first = repo.record_prompt(session, "1", "Classify the intent.", "default")
    second = repo.record_prompt(session, "1", "Pick the intent.", "user")
    old, other = repo.save_evaluations(
        session, [_evaluation("1", first.id, "a", 0.5), _evaluation("1", second.id, "a", 0.25)]
    )
    (new,) = repo.save_evaluations(session, [_evaluation("1", first.id, "b", 0.75)])
    assert [e.id for e in repo.list_evaluations(session, first.id)] == [new.id, old.id]
    stored = repo.list_evaluations(session, second.id)[0]
    assert stored.per_label["loan"]["f1"] == 2 / 3 and stored.confusion["matrix"] == [[1, 0], [1, 2]]
    latest = repo.latest_evaluations(session, "1")
    assert {v: h.id for v, h in latest.items()} == {first.id: new.id, second.id: other.id}
    assert (latest[first.id].accuracy, latest[first.id].macro_f1, latest[first.id].tasks) == (0.75, 0.375, 4)
    assert repo.latest_evaluations(session, "2") == {}
