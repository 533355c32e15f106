"""Prompt proposals made by the agent: list, read with diff and evidence, accept, reject with a reason."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, StringConstraints

from agent import review
from agent.models import Proposal, ProposalStatus
from service import runtime
from service.api.deps import SessionDep
from service.api.routes.projects import require_project
from service.api.routes.prompts import ActivePrompt, active_prompt
from service.auth import auth_enabled

router = APIRouter(tags=["proposals"])

_basic = HTTPBasic(auto_error=False)


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
    decided_by: str | None = None


class AcceptResponse(ActivePrompt):
    proposal: ProposalPublic


class RejectRequest(BaseModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    decided_by: str | None = None


def reviewer(credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)]) -> str | None:
    """Who decides when the request does not say: the basic-auth user, when auth is on."""
    return credentials.username if credentials is not None and auth_enabled() else None


ReviewerDep = Annotated[str | None, Depends(reviewer)]


def _public(proposal: Proposal) -> ProposalPublic:
    return ProposalPublic.model_validate(proposal, from_attributes=True)


def _not_found(exc: LookupError) -> HTTPException:
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=str(exc).strip("'\""))


def _conflict(exc: review.ReviewError) -> HTTPException:
    return HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc))


@router.get("/projects/{project_id}/proposals")
def list_proposals(session: SessionDep, project_id: str, status: ProposalStatus | None = None) -> list[ProposalPublic]:
    """The project's proposals, newest first; ``?status=pending`` for those awaiting review."""
    require_project(session, project_id)
    return [_public(p) for p in review.list_proposals(session, project_id, status)]


@router.get("/proposals/{proposal_id}")
def read_proposal(session: SessionDep, proposal_id: int) -> ProposalDetail:
    try:
        proposal = review.get_proposal(session, proposal_id)
        diff, pool = review.proposal_change(session, proposal) if proposal.text else ("", None)
    except LookupError as exc:
        raise _not_found(exc) from None
    return ProposalDetail(**_public(proposal).model_dump(), diff=diff, pool=pool)


@router.post("/proposals/{proposal_id}/accept")
def accept_proposal(
    session: SessionDep, proposal_id: int, who: ReviewerDep, body: AcceptRequest | None = None
) -> AcceptResponse:
    """Make the proposal the project's active prompt; the answer names the new ``model_version`` /predict
    reports from now on. 409 when the proposal was already decided (of two concurrent accepts one wins)."""
    try:
        version = review.accept_proposal(session, proposal_id, decided_by=(body and body.decided_by) or who)
    except LookupError as exc:
        raise _not_found(exc) from None
    except review.ReviewError as exc:
        raise _conflict(exc) from None
    proposal = review.get_proposal(session, proposal_id)
    runtime.warm_soon(version.project_id)
    return AcceptResponse(**active_prompt(version).model_dump(), proposal=_public(proposal))


@router.post("/proposals/{proposal_id}/reject")
def reject_proposal(session: SessionDep, proposal_id: int, body: RejectRequest, who: ReviewerDep) -> ProposalPublic:
    """Reject a pending proposal; the reason is required and kept with it. 409 when it was already decided."""
    try:
        proposal = review.reject_proposal(session, proposal_id, body.reason, decided_by=body.decided_by or who)
    except LookupError as exc:
        raise _not_found(exc) from None
    except review.ReviewError as exc:
        raise _conflict(exc) from None
    except ValueError as exc:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    return _public(proposal)
