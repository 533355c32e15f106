"""Review: accept (race-free), reject, rollback, diff."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import Session, select

from agent import review
from constraints.errors import NotFound
from service.store import db, repo
from service.store.models import PromptVersion, Proposal


def make_proposal(session: Session, text: str = "Pick the intent.\n\n{examples}Text:\n{text}\n") -> Proposal:
    base = repo.record_prompt(session, "1", "Classify the intent.", "default")
    proposal = Proposal(
        project_id="1",
        base_version_id=base.id,
        strategy="retrieval",
        text=text,
        examples={"pool": [{"task_id": 4, "text": "lost my card", "labels": {"intent": ["card"]}}], "k": 8},
        metrics={"accuracy": {"before": 0.2, "after": 0.8}},
    )
    session.add(proposal)
    session.commit()
    session.refresh(proposal)
    return proposal


@pytest.mark.databases
def test_two_concurrent_accepts_one_wins(db_url: str) -> None:
    engine = db.sql_engine(db_url)
    with Session(engine) as s:
        proposal_id = make_proposal(s).id
    barrier = threading.Barrier(2)
    results: list[object] = []

    def accept(who: str) -> None:
        with Session(engine) as s:
            barrier.wait()
            try:
                results.append(review.accept_proposal(s, proposal_id, decided_by=who).id)
            except review.NotPending as exc:
                results.append(exc)

    threads = [threading.Thread(target=accept, args=(f"reviewer{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, review.NotPending)]
    assert len(winners) == 1 and len(losers) == 1
    assert "no longer pending" in str(losers[0])
    with Session(engine) as s:
        agent_versions = s.exec(select(PromptVersion).where(PromptVersion.source == "agent")).all()
        assert [v.id for v in agent_versions] == winners
        assert repo.active_prompt(s, "1").id == winners[0]
        proposal = s.get(Proposal, proposal_id)
        assert proposal.status == "accepted" and proposal.result_version_id == winners[0]
        assert proposal.decided_by in {"reviewer0", "reviewer1"}


def test_accept_copies_the_pool_and_supersedes_other_pending(session: Session) -> None:
    first = make_proposal(session)
    second = make_proposal(session, text="Another candidate.")
    version = review.accept_proposal(session, first.id, "me")
    assert version.examples == first.examples and version.parent_id == first.base_version_id
    assert version.note == f"proposal {first.id} (retrieval)" and version.metrics == first.metrics
    session.refresh(second)
    assert second.status == "superseded"
    with pytest.raises(review.NotPending, match="it is superseded"):
        review.accept_proposal(session, second.id)
    with pytest.raises(NotFound):
        review.accept_proposal(session, 999)


def test_reject_needs_a_reason_and_only_once(session: Session) -> None:
    proposal = make_proposal(session)
    with pytest.raises(ValueError):
        review.reject_proposal(session, proposal.id, "  ")
    rejected = review.reject_proposal(session, proposal.id, "too long for interactive use", decided_by="ann")
    assert rejected.status == "rejected" and rejected.reason == "too long for interactive use"
    assert rejected.decided_by == "ann" and rejected.decided_at is not None
    with pytest.raises(review.NotPending):
        review.accept_proposal(session, proposal.id)
    assert repo.active_prompt(session, "1").source == "default"
    assert [p.id for p in review.list_proposals(session, "1", status="rejected")] == [proposal.id]
    assert review.list_proposals(session, "1", status="pending") == []


def test_rollback_activates_an_older_version(session: Session) -> None:
    proposal = make_proposal(session)
    base_id = proposal.base_version_id
    accepted = review.accept_proposal(session, proposal.id)
    assert repo.active_prompt(session, "1").id == accepted.id
    back = review.rollback(session, "1", base_id)
    assert back.id == base_id and back.is_active
    assert repo.active_prompt(session, "1").id == base_id
    assert [v.id for v in review.prompt_history(session, "1")] == [base_id, accepted.id]
    with pytest.raises(NotFound):
        review.rollback(session, "other", base_id)


def test_diff_between_versions_and_for_a_proposal(session: Session) -> None:
    proposal = make_proposal(session)
    diff = review.diff_proposal(session, proposal.id)
    assert diff.startswith(f"--- version {proposal.base_version_id}\n+++ proposal {proposal.id}\n")
    assert "-Classify the intent.\n" in diff
    assert "+Pick the intent.\n" in diff and "+{examples}Text:\n" in diff
    assert "[task " not in diff  # the pool is a summary, not lines of the diff
    _, pool = review.proposal_change(session, proposal)
    assert [e["task_id"] for e in pool["added"]] == [e["task_id"] for e in proposal.examples["pool"]]
    assert pool["removed"] == [] and pool["labels_after"]["card"] >= 1
    version = review.accept_proposal(session, proposal.id)
    assert review.diff_versions(session, proposal.base_version_id, version.id).replace(
        f"proposal {proposal.id}", f"version {version.id}"
    ) == diff.replace(f"proposal {proposal.id}", f"version {version.id}")
    assert review.diff_versions(session, version.id, version.id) == ""
    with pytest.raises(NotFound):
        review.diff_versions(session, version.id, 12345)
