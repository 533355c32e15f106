"""Live evaluation: a new prompt version measured on the project's annotated tasks against the active one, in
the real store with the demonstration-copying stub engine (a pool of annotated examples makes it right)."""

from __future__ import annotations

import threading

from sqlmodel import Session, select

from agent import live_eval
from agent.live_eval import LiveEvaluator, evaluate_version
from constraints.base import EngineNotReady
from service.demonstrations import compose, pool_from_tasks
from service.labeling import ProjectSchema
from service.predictor import direct_predictor
from service.projects import ensure_prompt
from service.runtime import events
from service.settings import settings
from service.store import db, repo
from service.store.models import AnnotationCreate, AnnotationPublic, Evaluation, PromptVersion
from service.store.tasks import annotated_tasks, remember_tasks
from tests.agent.conftest import CONFIG, labeled


def typed_version(session: Session, schema: ProjectSchema, project: str = "1") -> tuple[PromptVersion, PromptVersion]:
    """(the active default prompt, a typed version that retrieves 4 of the annotated examples per task)."""
    active = ensure_prompt(session, project, schema)
    pool = pool_from_tasks(schema, annotated_tasks(session, project, schema))
    text = compose("Which intent is it?", schema, retrieval=True)
    typed = repo.record_prompt(
        session, project, text, "annotator", parent_id=active.id, examples={"pool": pool, "k": 4}
    )
    return active, typed


def rows(session: Session) -> list[Evaluation]:
    return list(session.exec(select(Evaluation).order_by(Evaluation.id)))


def test_a_typed_version_is_compared_with_the_active_one_on_the_same_tasks(session, schema, stub_engine, seed) -> None:
    seed(stub_engine, 30, record=False)
    active, typed = typed_version(session, schema)
    predict = direct_predictor(stub_engine)

    stored = evaluate_version(session, stub_engine, predict, typed.id, "typed")

    assert stored is not None and stored.status == "ok" and stored.trigger == "typed"
    base = repo.latest_evaluation(session, active.id)
    assert base is not None and base.trigger == "comparison" and base.compared_with_id is None
    assert stored.tasks == base.tasks == 30 and stored.tasks_key == base.tasks_key
    assert stored.compared_with_id == active.id and stored.compared_accuracy == base.accuracy
    assert base.accuracy < 0.5 < stored.accuracy  # the default prompt answers "loan"; the pool copies neighbours
    assert stored.fixes and set(stored.fixes) <= set(range(1, 31)) and stored.p_value < 0.05 and stored.significant
    gain = (len(stored.fixes) - len(stored.breaks)) / 30
    assert abs(stored.accuracy - base.accuracy - gain) < 1e-9
    assert stored.ece is not None and 0.0 <= stored.ece <= 1.0 and stored.macro_f1 > base.macro_f1
    assert stored.model_version == f"prompt-{typed.id}@stub-copy" and stored.confusion["labels"] == [
        "loan",
        "card",
        "credit card",
    ]

    assert evaluate_version(session, stub_engine, predict, typed.id, "typed").id == stored.id  # nothing new to measure
    assert len(rows(session)) == 2

    found = repo.latest_comparison(session, typed.id)
    assert found is not None and found.evaluation.id == stored.id and found.active.id == base.id
    assert repo.latest_comparison(session, active.id).active is None
    headline = repo.latest_evaluations(session, "1")[typed.id]
    assert (headline.fixes, headline.breaks, headline.compared_with_id) == (len(stored.fixes), 0, active.id)
    assert repo.count_evaluations(session) == {"ok": 2}


def test_at_most_eval_tasks_the_most_recently_annotated_first(session, schema, stub_engine, seed) -> None:
    seed(stub_engine, 30, record=False)
    _, typed = typed_version(session, schema)
    stored = evaluate_version(session, stub_engine, direct_predictor(stub_engine), typed.id, "typed", limit=10)
    assert stored.tasks == 10 and sorted(map(int, stored.outcomes)) == list(range(21, 31))


def test_a_project_without_annotations_gets_no_evaluation(session, schema, stub_engine) -> None:
    repo.upsert_project(session, "1", CONFIG)
    version = repo.record_prompt(session, "1", "Which intent?\n{text}", "annotator")
    assert evaluate_version(session, stub_engine, direct_predictor(stub_engine), version.id, "typed") is None
    assert rows(session) == [] and repo.latest_comparison(session, version.id) is None


def test_failures_are_recorded_with_their_reason(session, schema, stub_engine, seed, db_url) -> None:
    repo.upsert_project(session, "1", CONFIG)
    for i in (1, 2, 3):  # annotated, but the task data never reached Prompter
        repo.upsert_annotation(
            session, AnnotationCreate(id=900 + i, project_id="1", task_id=i, choices={"intent": ["loan"]})
        )
    version = ensure_prompt(session, "1", schema)
    gone = evaluate_version(session, stub_engine, direct_predictor(stub_engine), version.id, "typed")
    assert gone.status == "failed" and gone.accuracy is None
    assert gone.reason == "no annotated task can be scored: 3 annotated tasks have no stored data: 1, 2, 3"

    seed(stub_engine, 6, record=False, start=3)  # tasks 4..9 have data: measured, the three without it named
    partial = evaluate_version(session, stub_engine, direct_predictor(stub_engine), version.id, "annotations")
    assert partial.status == "ok" and partial.tasks == 6 and partial.reason.startswith("3 annotated tasks have no")

    def broken(*_):
        raise RuntimeError("the vLLM server closed the connection")

    _, typed = typed_version(session, schema)
    failed = evaluate_version(session, stub_engine, broken, typed.id, "typed")
    assert failed.status == "failed" and failed.reason == "RuntimeError: the vLLM server closed the connection"

    def down():
        raise EngineNotReady("the model failed to load: out of memory", retry_after=0)

    evaluator = LiveEvaluator(down, lambda: Session(db.sql_engine(db_url)))
    unavailable = evaluator.run(typed.id, "typed")
    assert unavailable.status == "failed" and unavailable.reason.startswith(
        "the model is not available: the model failed"
    )
    assert repo.count_evaluations(session) == {"failed": 3, "ok": 1}
    assert repo.latest_comparison(session, typed.id) is None  # never measured successfully


def test_the_worker_coalesces_and_re_evaluates_as_annotations_arrive(
    db_url, schema, stub_engine, seed, session, monkeypatch
) -> None:
    monkeypatch.setattr(settings, "eval_recent", 1)
    seed(stub_engine, 24, record=False)
    active, typed = typed_version(session, schema)
    older = repo.record_prompt(session, "1", "An older typed prompt.\n{text}", "annotator")
    newest = repo.record_prompt(session, "1", "The newest typed prompt.\n{text}", "annotator")
    gate = threading.Event()

    def engine():
        gate.wait(60)  # the first job waits here, so the next requests queue behind it
        return stub_engine

    evaluator = LiveEvaluator(engine, lambda: Session(db.sql_engine(db_url)))
    live_eval.install(evaluator)
    try:
        events.emit_prompt_version("1", older.id, "typed")  # taken by the worker, which then waits on the gate
        assert evaluator.request(typed.id, "typed") is True
        assert evaluator.request(typed.id, "typed") is False  # already waiting: coalesced
        gate.set()
        assert evaluator.join(120)
        with Session(db.sql_engine(db_url)) as s:
            assert {(e.prompt_version_id, e.trigger) for e in rows(s)} == {
                (older.id, "typed"),
                (typed.id, "typed"),
                (active.id, "comparison"),
            }
            remember_tasks(s, "1", [{"id": 25, "data": {"text": labeled()[24][0]}}])
            annotation = repo.upsert_annotation(
                s, AnnotationCreate(id=1025, project_id="1", task_id=25, choices={"intent": [labeled()[24][1]]})
            )
        events.emit_annotation_saved(AnnotationPublic.model_validate(annotation))
        assert evaluator.join(120)
        with Session(db.sql_engine(db_url)) as s:
            again = [e for e in rows(s) if e.trigger == "annotations"]
            # bounded: the active version and the newest other one, on the 25 tasks annotated now
            assert {e.prompt_version_id for e in again} == {active.id, newest.id}
            assert all(e.tasks == 25 and e.status == "ok" for e in again)
            assert repo.latest_evaluation(s, typed.id).tasks == 24  # not among the newest: not re-evaluated
    finally:
        for hooks, callback in live_eval.SUBSCRIPTIONS:
            while callback in hooks:
                hooks.remove(callback)
        live_eval._evaluator = None


def test_pairing_reads_per_task_f1_and_the_older_true_false_outcomes() -> None:
    # a multi-label version two of three right where the active one had one of three: a fix, not a tie
    base = Evaluation(project_id="1", prompt_version_id=1, run_id="r", model_version="m", source="live",
                      outcomes={"1": 1 / 2, "2": 1.0, "3": True, "4": False})  # fmt: skip
    mine = {"1": 0.8, "2": 0.5, "3": 1.0, "4": 1.0, "9": 1.0}  # task 9 was not measured for the active one
    compared = live_eval.comparison(mine, base, alpha=0.05)
    assert compared["fixes"] == [1, 4] and compared["breaks"] == [2]
    assert compared["compared_with_id"] == 1 and not compared["significant"]
