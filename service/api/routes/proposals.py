"""Prompt proposals made by the agent: list, read with diff and evidence, accept, reject with a reason."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, StringConstraints

from agent import live_eval, review
from service.api.deps import SessionDep
from service.api.reviewers import ReviewerDep
from service.api.routes.projects import require_project
from service.api.routes.prompts import ActivePrompt, active_prompt, version_of
from service.runtime import events, host
from service.settings import settings
from service.store.models import Proposal, ProposalStatus

router = APIRouter(tags=["proposals"])


class ProposalPublic(BaseModel):
    """A candidate prompt (and demonstration pool) with ``metrics``, the evidence it beats its base version:
    ``accuracy`` / ``macro_f1`` ``{before, after}``, ``fixes`` / ``breaks`` (tasks with gold, before, after),
    ``per_label`` F1 changes, ``p_value`` of ``test``, ``validation_tasks`` and ``cost`` (tokens, seconds)."""

    id: int
    project_id: str
    run_id: int | None
    base_version_id: int
    strategy: str
    text: str
    examples: dict[str, Any] | None
    status: str
    reason: str | None
    metrics: dict[str, Any] | None
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    result_version_id: int | None


class ProposalDetail(ProposalPublic):
    diff: str  # unified diff of the prompt text from the base version; empty for failed proposals
    # the demonstration pool's change: before/after sizes and k, examples added/removed, labels covered
    pool: dict[str, Any] | None = None


class AcceptRequest(BaseModel):
    decided_by: str | None = None  # heeded unless a reviewer account authenticates (see `decider`)


class AcceptResponse(ActivePrompt):
    proposal: ProposalPublic


class RejectRequest(BaseModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    decided_by: str | None = None


def decider(who: str | None, typed: str | None) -> str | None:
    """Who decided: a reviewer account's name; with the basic-auth pair Label Studio shares (or no credentials on
    loopback), the name the reviewer typed on the page, else that pair's user."""
    if who and who != settings.basic_auth_user:
        return who
    return (typed or "").strip() or who


def _public(proposal: Proposal) -> ProposalPublic:
    return ProposalPublic.model_validate(proposal, from_attributes=True)


@router.get("/projects/{project_id}/proposals")
def list_proposals(session: SessionDep, project_id: str, status: ProposalStatus | None = None) -> list[ProposalPublic]:
    """The project's proposals, newest first; ``?status=pending`` for those awaiting review."""
    require_project(session, project_id)
    return [_public(p) for p in review.list_proposals(session, project_id, status)]


@router.get("/proposals/{proposal_id}")
def read_proposal(session: SessionDep, proposal_id: int) -> ProposalDetail:
    proposal = review.get_proposal(session, proposal_id)
    diff, pool = review.proposal_change(session, proposal) if proposal.text else ("", None)
    return ProposalDetail(**_public(proposal).model_dump(), diff=diff, pool=pool)


@router.post("/proposals/{proposal_id}/accept")
def accept_proposal(
    session: SessionDep, proposal_id: int, who: ReviewerDep, body: AcceptRequest | None = None
) -> AcceptResponse:
    """Make the proposal the project's active prompt; the answer names the new ``model_version`` /predict
    reports from now on; ``decided_by`` is the authenticated reviewer. 409 when the proposal was already decided
    (of two concurrent accepts one wins)."""
    version = review.accept_proposal(session, proposal_id, decided_by=decider(who, body and body.decided_by))
    proposal = review.get_proposal(session, proposal_id)
    host.warm_soon(version.project_id)
    events.emit_prompt_version(version.project_id, version.id, "accepted")
    return AcceptResponse(**active_prompt(version).model_dump(), proposal=_public(proposal))


@router.post("/projects/{project_id}/prompts/{version_id}/accept")
def accept_version(
    session: SessionDep, project_id: str, version_id: int, who: ReviewerDep, body: AcceptRequest | None = None
) -> AcceptResponse:
    """Make a typed version the active prompt by the proposals' accept flow: recorded as an accepted proposal
    (strategy "annotator", its live evaluation as the evidence, ``decided_by``), the version keeps its lineage
    and Label Studio sees its ``model_version``. 409 when it is already active or belongs to another project."""
    require_project(session, project_id)
    version_of(session, project_id, version_id)
    evidence = live_eval.evidence(session, version_id)
    version, proposal = review.accept_version(session, version_id, decider(who, body and body.decided_by), evidence)
    host.warm_soon(project_id)
    events.emit_prompt_version(project_id, version.id, "accepted")
    return AcceptResponse(**active_prompt(version).model_dump(), proposal=_public(proposal))


@router.post("/proposals/{proposal_id}/reject")
def reject_proposal(session: SessionDep, proposal_id: int, body: RejectRequest, who: ReviewerDep) -> ProposalPublic:
    """Reject a pending proposal; the reason is required and kept with it. 409 when it was already decided."""
    proposal = review.reject_proposal(session, proposal_id, body.reason, decided_by=decider(who, body.decided_by))
    return _public(proposal)
