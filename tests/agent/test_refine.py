"""Refinement end to end through the real store: candidates scored on validation, the proposal, acceptance."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from agent import review
from agent.evaluate import TEST_NAME, NoAnnotations
from agent.loop import RefinementBusy, Worker, refine, request_refinement, start_run
from service.predictor import Prompt, label_tasks, prepare
from service.settings import AgentSettings
from service.store import repo
from service.store.models import Proposal, RefinementRun
from service.store.tasks import annotated_tasks


def test_refinement_proposes_retrieval_and_accepting_activates_it(session: Session, schema, stub_engine, cfg, seed):
    seed(stub_engine, 30)
    outcome = refine(session, stub_engine, "1", "api", cfg)
    proposal = outcome.proposal
    assert proposal is not None and proposal.status == "pending"
    assert proposal.strategy == "retrieval"
    assert "{examples}" in proposal.text
    m = proposal.metrics
    assert m["test"] == TEST_NAME
    assert m["accuracy"]["after"] > m["accuracy"]["before"]
    assert m["macro_f1"]["after"] > m["macro_f1"]["before"]
    assert m["p_value"] < 0.05 and len(m["fixes"]) > len(m["breaks"])
    assert m["per_label"] and set(m["cost"]) >= {"tokens", "seconds"}
    # every annotated task was validated, by folds whose candidates never saw them; the pool shipped has all
    tasks = annotated_tasks(session, "1", schema)
    assert m["validation_tasks"] == len(tasks) == 30 and m["folds"] == cfg.folds
    assert len(proposal.examples["pool"]) == len(tasks) == 30
    assert set(m["latency_s"]) >= {"before", "after"} and m["prompt_tokens"]["after"] > m["prompt_tokens"]["before"]

    run = session.get(RefinementRun, outcome.run_id)
    assert run.status == "done" and run.summary["proposal_id"] == proposal.id
    assert {c["strategy"] for c in run.summary["candidates"]} == {"retrieval", "fixed_demos", "definitions"}

    base = repo.active_prompt(session, "1")
    version = review.accept_proposal(session, proposal.id, decided_by="reviewer")
    assert version.is_active and version.source == "agent" and version.parent_id == base.id
    assert version.examples == proposal.examples
    assert repo.active_prompt(session, "1").id == version.id
    session.refresh(proposal)
    assert proposal.status == "accepted" and proposal.result_version_id == version.id

    # the accepted prompt labels new tasks with retrieved demonstrations
    tasks = [{"id": 99, "data": {"text": "my debit card never arrived"}}]
    contexts = prepare(stub_engine, schema, tasks, Prompt.of(version))
    assert contexts[0].shots.count("Intent:\n") == cfg.demos_k
    pred = label_tasks(stub_engine, schema, tasks, Prompt.of(version))[0]
    assert pred.labels == {"intent": ["card"]}


def test_refinement_without_annotations_is_a_clear_error(session: Session, schema, stub_engine, cfg):
    repo.upsert_project(
        session,
        "1",
        "<View><Text name='text' value='$text'/>"
        "<Choices name='intent' toName='text'><Choice value='a'/><Choice value='b'/></Choices></View>",
    )
    with pytest.raises(NoAnnotations, match="no annotated tasks"):
        refine(session, stub_engine, "1", "api", cfg)
    with pytest.raises(NoAnnotations):
        request_refinement(Worker(lambda: stub_engine, lambda: Session(session.get_bind())), session, "1")
    assert session.exec(select(RefinementRun)).all() == []
    with pytest.raises(NoAnnotations, match="not set up"):
        refine(session, stub_engine, "unknown", "api", cfg)


def test_one_refinement_per_project(session: Session, stub_engine, cfg, seed):
    seed(stub_engine, 6)
    run = start_run(session, "1", "api", lease_seconds=60)
    with pytest.raises(RefinementBusy):
        start_run(session, "1", "api", lease_seconds=60)
    with pytest.raises(RefinementBusy):
        refine(session, stub_engine, "1", "api", cfg)
    assert run.status == "running"


def test_an_expired_lease_is_taken_over(session: Session, stub_engine, cfg, seed):
    seed(stub_engine, 6)
    dead = start_run(session, "1", "api", lease_seconds=-1)  # its worker died: the lease is already over
    fresh = start_run(session, "1", "api", lease_seconds=60)
    session.refresh(dead)
    assert dead.status == "failed" and "lease expired" in dead.error
    assert fresh.status == "running" and fresh.id != dead.id


def test_tiny_model_end_to_end_through_the_store(session: Session, schema, tiny_engine, seed):
    """The real local engine (tiny random Gemma 3) and the real store: corrections, scoring, the run's record."""
    seed(tiny_engine, 12)
    cfg = AgentSettings(strategies=["retrieval", "fixed_demos", "definitions"], demos_k=2, alpha=0.5)
    outcome = refine(session, tiny_engine, "1", "api", cfg)
    run = session.get(RefinementRun, outcome.run_id)
    assert run.status == "done" and run.finished_at is not None
    assert run.summary["examples"] == run.summary["validation"] == 12
    scored = [c for c in run.summary["candidates"] if "accuracy" in c]
    assert scored and all(0.0 <= c["accuracy"]["after"] <= 1.0 for c in scored)
    assert all(c["fixes"] + c["breaks"] <= run.summary["validation"] for c in scored)
    if outcome.proposal is not None:
        assert outcome.proposal.metrics["p_value"] < 0.5
        assert review.accept_proposal(session, outcome.proposal.id).is_active
    assert session.exec(select(Proposal).where(Proposal.status == "pending")).all() == []


def test_a_rejected_candidate_is_never_proposed_again(session: Session, stub_engine, cfg, seed):
    """Rejected, then the same annotations: the same candidate is skipped, and the run record says why.
    Accepted and rolled back: the rolled-back version is not proposed again either."""
    seed(stub_engine, 30)
    first = refine(session, stub_engine, "1", "api", cfg).proposal
    assert first is not None
    review.reject_proposal(session, first.id, "too many tokens", decided_by="lead")

    second = refine(session, stub_engine, "1", "api", cfg)
    assert second.proposal is None or (second.proposal.text, second.proposal.examples) != (first.text, first.examples)
    skipped = {c["strategy"]: c for c in second.candidates if c["verdict"] == "skipped"}
    assert first.strategy in skipped
    assert f"proposal #{first.id}, rejected: too many tokens" in skipped[first.strategy]["reason"]
    run = session.get(RefinementRun, second.run_id)
    assert any(c["verdict"] == "skipped" and "rejected" in c["reason"] for c in run.summary["candidates"])
    same = [
        p
        for p in session.exec(select(Proposal).where(Proposal.id != first.id))
        if (p.text, p.examples) == (first.text, first.examples)
    ]
    assert same == []  # never proposed twice


def test_a_rolled_back_version_is_not_proposed_again(session: Session, stub_engine, cfg, seed):
    seed(stub_engine, 30)
    base = repo.active_prompt(session, "1")
    proposal = refine(session, stub_engine, "1", "api", cfg).proposal
    version = review.accept_proposal(session, proposal.id)
    again = refine(session, stub_engine, "1", "api", cfg)  # the accepted version is active
    assert again.proposal is None
    assert {c["strategy"]: c["verdict"] for c in again.candidates}["retrieval"] == "nothing to propose"
    review.rollback(session, "1", base.id)
    third = refine(session, stub_engine, "1", "api", cfg)
    [skipped] = [c for c in third.candidates if c["strategy"] == "retrieval"]
    assert skipped["verdict"] == "skipped", third.candidates
    assert f"version #{version.id}, no longer active" in skipped["reason"]
    assert third.proposal is None or (third.proposal.text, third.proposal.examples) != (version.text, version.examples)


def test_the_run_reports_how_many_tasks_would_prove_a_gain(session: Session, stub_engine, seed):
    """Too few annotations for the gain to be significant: the run says how many would let it be."""
    seed(stub_engine, 4)
    cfg = AgentSettings(strategies=["retrieval"], demos_k=2)
    outcome = refine(session, stub_engine, "1", "api", cfg)
    run = session.get(RefinementRun, outcome.run_id)
    [candidate] = run.summary["candidates"]
    if candidate["verdict"] == "not significant" and candidate["fixes"] > candidate["breaks"]:
        assert run.summary["tasks_needed"] == candidate["tasks_needed"] > 4
    assert run.summary["validation"] == 4 and run.summary["folds"] == 4
