"""Review operations, framework-free: list and read proposals, accept or reject them, roll back, what a proposal
changes (a text diff and a demonstration-pool summary), and whether a candidate was seen before.

The REST layer maps ``NotFound`` to 404 and ``NotPending`` / ``ReviewError`` to 409 (``service.api.errors``).
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from constraints.errors import BadInput, Conflict, NotFound
from service.store import repo
from service.store.models import PromptVersion, Proposal, utcnow


class ReviewError(Conflict):
    """A review action that conflicts with the current state (409)."""


class NotPending(ReviewError):
    """The proposal was already decided (accepted, rejected, failed or superseded)."""


def list_proposals(session: Session, project_id: str, status: str | None = None) -> list[Proposal]:
    """A project's proposals, newest first; optionally only those with ``status``."""
    statement = select(Proposal).where(Proposal.project_id == project_id)
    if status is not None:
        statement = statement.where(Proposal.status == status)
    return list(session.exec(statement.order_by(col(Proposal.id).desc())))


def get_proposal(session: Session, proposal_id: int) -> Proposal:
    proposal = session.get(Proposal, proposal_id)
    if proposal is None:
        raise NotFound(f"no proposal {proposal_id}")
    return proposal


def _claim(session: Session, proposal_id: int, status: str, decided_by: str | None, reason: str | None) -> Proposal:
    """Move a pending proposal to ``status`` with a conditional UPDATE: of two concurrent callers one wins,
    the other gets NotPending. Leaves the transaction open for the caller to finish."""
    values: dict[str, Any] = {"status": status, "decided_at": utcnow(), "decided_by": decided_by}
    if reason is not None:
        values["reason"] = reason
    result = session.exec(
        update(Proposal).where(col(Proposal.id) == proposal_id, col(Proposal.status) == "pending").values(**values)
    )
    if result.rowcount != 1:
        session.rollback()
        current = get_proposal(session, proposal_id)
        session.refresh(current)
        raise NotPending(f"proposal {proposal_id} is no longer pending: it is {current.status}")
    proposal = session.get(Proposal, proposal_id, populate_existing=True)
    assert proposal is not None
    return proposal


def accept_proposal(session: Session, proposal_id: int, decided_by: str | None = None) -> PromptVersion:
    """Accept a pending proposal: a new active version (source "agent", parent = the proposal's base, pool
    copied); other pending proposals of the project are superseded. NotPending if it was already decided."""
    proposal = _claim(session, proposal_id, "accepted", decided_by, None)
    repo.lock_project(session, proposal.project_id)  # one active version, whatever else activates one meanwhile
    version = PromptVersion(
        project_id=proposal.project_id,
        text=proposal.text,
        source="agent",
        author=decided_by,
        parent_id=proposal.base_version_id,
        note=f"proposal {proposal.id} ({proposal.strategy})",
        metrics=proposal.metrics,
        examples=proposal.examples,
        decision=proposal.decision,
    )
    session.add(version)
    session.flush()
    repo.set_active(session, version)  # the old one off first: one active version is a unique index
    session.exec(
        update(Proposal)
        .where(col(Proposal.project_id) == proposal.project_id, col(Proposal.status) == "pending")
        .values(status="superseded", decided_at=utcnow(), reason=f"proposal {proposal.id} was accepted")
    )
    proposal.result_version_id = version.id
    session.add(proposal)
    session.commit()
    session.refresh(version)
    return version


def accept_version(
    session: Session, version_id: int, decided_by: str | None = None, metrics: dict[str, Any] | None = None
) -> tuple[PromptVersion, Proposal]:
    """Make a typed version the active one as a proposal is accepted: a proposal (strategy "annotator", base =
    the active version, the typed text, pool and weights, ``metrics`` the evidence) recorded as accepted by
    ``decided_by``, pending proposals superseded. The version itself becomes active, so its lineage (its parent,
    its author) stays and Label Studio sees its own ``model_version``. ReviewError when it is already active."""
    version = session.get(PromptVersion, version_id)
    if version is None:
        raise NotFound(f"no prompt version {version_id}")
    repo.lock_project(session, version.project_id)
    active = repo.active_prompt(session, version.project_id)
    if active is not None and active.id == version.id:
        session.rollback()
        raise ReviewError(f"prompt version {version_id} is already the active one")
    now = utcnow()
    session.exec(
        update(Proposal)
        .where(col(Proposal.project_id) == version.project_id, col(Proposal.status) == "pending")
        .values(status="superseded", decided_at=now, reason=f"prompt version {version_id} was accepted")
    )
    proposal = Proposal(
        project_id=version.project_id,
        base_version_id=active.id if active is not None else version.id,
        strategy="annotator",
        text=version.text,
        examples=version.examples,
        decision=version.decision,
        status="accepted",
        metrics=metrics,
        decided_at=now,
        decided_by=decided_by,
        result_version_id=version.id,
    )
    session.add(proposal)
    repo.set_active(session, version)
    session.commit()
    session.refresh(version)
    session.refresh(proposal)
    return version, proposal


def reject_proposal(session: Session, proposal_id: int, reason: str, decided_by: str | None = None) -> Proposal:
    """Reject a pending proposal with the reviewer's reason; NotPending if it was already decided."""
    if not reason or not reason.strip():
        raise BadInput("a rejection needs a reason")
    proposal = _claim(session, proposal_id, "rejected", decided_by, reason.strip())
    session.commit()
    session.refresh(proposal)
    return proposal


def rollback(session: Session, project_id: str, version_id: int) -> PromptVersion:
    """Make an older version of ``project_id`` the active one again."""
    version = session.get(PromptVersion, version_id)
    if version is None or version.project_id != project_id:
        raise NotFound(f"project {project_id} has no prompt version {version_id}")
    return repo.activate_prompt(session, version_id)


def prompt_history(session: Session, project_id: str) -> list[PromptVersion]:
    """Every version of the project, oldest first, with its lineage (``parent_id``) and metrics."""
    return repo.list_prompt_versions(session, project_id)


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def diff_versions(session: Session, from_id: int, to_id: int) -> str:
    """Unified diff of the prompt text from one version to another (the pool: ``version_change``)."""
    return version_change(session, from_id, to_id)[0]


def diff_proposal(session: Session, proposal_id: int) -> str:
    """Unified diff of the prompt text from the proposal's base version (the pool: ``proposal_change``)."""
    return proposal_change(session, get_proposal(session, proposal_id))[0]


# -- what a proposal changes, readably ---------------------------------------------------------------


def text_diff(a_text: str, b_text: str, a_name: str, b_name: str) -> str:
    """Unified diff of the prompt texts alone (instruction, definitions, fixed demonstrations)."""
    return "".join(difflib.unified_diff(_lines(a_text), _lines(b_text), a_name, b_name))


def decision_text(decision: dict[str, Any] | None) -> str:
    """How a version decides, as lines the diff can compare: each control's weights (or the defaults)."""
    if not decision:
        return "\n\n[how it decides: the default weights]\n"
    lines = ["", "", "[how it decides]"]
    for control, record in sorted(decision.items()):
        weights = record.get("weights", {})
        shown = {k: v for k, v in weights.items() if isinstance(v, float) and v and not (k == "set_scale" and v == 1)}
        figures = ", ".join(f"{k} {v:.2f}" for k, v in shown.items())
        lines.append(f"{control}: {figures} ({record.get('note', '')}, {record.get('annotated', 0)} tasks)")
    return "\n".join(lines) + "\n"


def _covered(pool: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in pool:
        for control, chosen in (entry.get("labels") or {}).items():
            for label in chosen:
                key = label if len(entry["labels"]) == 1 else f"{control}/{label}"
                counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def pool_change(a_examples: dict[str, Any] | None, b_examples: dict[str, Any] | None) -> dict[str, Any] | None:
    """The demonstration pool's change as a summary: sizes, ``k``, the examples added and removed (whole, so
    the page can show them), and the labels covered before and after (examples per label). None: no pool."""
    a_pool = (a_examples or {}).get("pool") or []
    b_pool = (b_examples or {}).get("pool") or []
    if not a_pool and not b_pool:
        return None
    a_ids = {e.get("task_id") for e in a_pool}
    b_ids = {e.get("task_id") for e in b_pool}
    return {
        "before": len(a_pool),
        "after": len(b_pool),
        "k_before": (a_examples or {}).get("k") if a_pool else None,
        "k_after": (b_examples or {}).get("k") if b_pool else None,
        "added": [e for e in b_pool if e.get("task_id") not in a_ids],
        "removed": [e for e in a_pool if e.get("task_id") not in b_ids],
        "labels_before": _covered(a_pool),
        "labels_after": _covered(b_pool),
    }


def proposal_change(session: Session, proposal: Proposal) -> tuple[str, dict[str, Any] | None]:
    """(the text diff from the base version, the pool change) of a proposal."""
    base = session.get(PromptVersion, proposal.base_version_id)
    if base is None:
        raise NotFound(f"no prompt version {proposal.base_version_id}")
    before, after = base.text + decision_text(base.decision), proposal.text + decision_text(proposal.decision)
    diff = text_diff(before, after, f"version {base.id}", f"proposal {proposal.id}")
    return diff, pool_change(base.examples, proposal.examples)


def version_change(session: Session, from_id: int, to_id: int) -> tuple[str, dict[str, Any] | None]:
    a, b = session.get(PromptVersion, from_id), session.get(PromptVersion, to_id)
    if a is None or b is None:
        raise NotFound(f"no prompt version {from_id if a is None else to_id}")
    before, after = a.text + decision_text(a.decision), b.text + decision_text(b.decision)
    return text_diff(before, after, f"version {a.id}", f"version {b.id}"), pool_change(a.examples, b.examples)


# -- never propose twice ----------------------------------------------------------------------------------


def fingerprint(text: str, examples: dict[str, Any] | None) -> str:
    """What makes two prompts the same prompt: the text and the pool (entries and ``k``), nothing else."""
    pool = (examples or {}).get("pool") or []
    shape = {"text": text, "pool": pool, "k": (examples or {}).get("k") if pool else None}
    return json.dumps(shape, sort_keys=True, ensure_ascii=False)


def seen_before(session: Session, project_id: str, text: str, examples: dict[str, Any] | None) -> str | None:
    """Why a candidate must not be proposed (it is the active version, a version rolled back or replaced, a
    rejected or pending proposal), or None when it is new."""
    mine = fingerprint(text, examples)
    versions = sorted(repo.list_prompt_versions(session, project_id), key=lambda v: not v.is_active)
    for v in versions:
        if fingerprint(v.text, v.examples) == mine:
            if v.is_active:
                return f"identical to the active version #{v.id}"
            return f"identical to version #{v.id}, no longer active (rolled back or replaced): roll back to it instead"
    for p in list_proposals(session, project_id):
        if p.status in ("rejected", "pending") and fingerprint(p.text, p.examples) == mine:
            if p.status == "rejected":
                return f"identical to proposal #{p.id}, rejected: {p.reason or 'no reason given'}"
            return f"identical to proposal #{p.id}, still pending"
    return None
