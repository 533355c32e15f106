"""The agent's tables: corrections learned from annotations, prompt proposals, refinement runs, task data.

Registered on the same ``SQLModel.metadata`` as the store's tables; migration 0002 creates them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service.store.models import utcnow

ProposalStatus = Literal["pending", "accepted", "rejected", "failed", "superseded"]
RunStatus = Literal["running", "done", "failed"]
RUNNING = "running"


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=sa.DateTime(timezone=True), **kwargs)


class TaskData(SQLModel, table=True):
    """The data of a Label Studio task, kept so annotated tasks can be re-scored and shown as demonstrations."""

    __tablename__ = "task_data"

    project_id: str = Field(foreign_key="project.id", primary_key=True, max_length=64)
    task_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    updated_at: datetime = _ts(default_factory=utcnow)


class Correction(SQLModel, table=True):
    """One annotation's answer for one Choices control next to what the model predicted for that task.

    ``agree`` is True when the annotator kept the model's labels; otherwise ``gold`` corrects ``predicted``.
    No foreign key to ``annotation``: the webhook deletes annotations before the agent withdraws these.
    """

    __table_args__ = (sa.UniqueConstraint("annotation_id", "control", name="uq_correction_annotation_control"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="project.id", index=True, max_length=64)
    task_id: int = Field(index=True)
    annotation_id: int
    control: str = Field(max_length=255)
    gold: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    predicted: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    prompt_version_id: int = Field(foreign_key="prompt_version.id")
    model_version: str = Field(max_length=255)
    agree: bool
    created_at: datetime = _ts(default_factory=utcnow)


class RefinementRun(SQLModel, table=True):
    """One refinement of one project. At most one ``running`` row per project (a unique partial index):
    the database, not the process, decides who refines, so two workers or processes never refine at once.
    A run whose ``lease_until`` passed is taken to have died and may be superseded."""

    __tablename__ = "refinement_run"
    __table_args__ = (
        sa.Index(
            "uq_refinement_run_one_running",
            "project_id",
            unique=True,
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="project.id", index=True, max_length=64)
    trigger: str = Field(max_length=32)  # "disagreements" | "start_training" | "api" | "simulate"
    status: str = Field(default=RUNNING, max_length=16)  # RunStatus
    started_at: datetime = _ts(default_factory=utcnow)
    finished_at: datetime | None = _ts(default=None)
    lease_until: datetime = _ts()
    error: str | None = Field(default=None, sa_type=sa.Text)
    corrections_seen: int = 0  # highest correction id when the run started: later ones count as new
    summary: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)


class Proposal(SQLModel, table=True):
    """A candidate prompt (and demonstration pool) with the evidence that it beats its base version."""

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="project.id", index=True, max_length=64)
    run_id: int | None = Field(default=None, foreign_key="refinement_run.id")
    base_version_id: int = Field(foreign_key="prompt_version.id")
    strategy: str = Field(max_length=32)
    text: str = Field(sa_type=sa.Text)
    examples: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    status: str = Field(default="pending", max_length=16, index=True)  # ProposalStatus
    reason: str | None = Field(default=None, sa_type=sa.Text)
    metrics: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    created_at: datetime = _ts(default_factory=utcnow)
    decided_at: datetime | None = _ts(default=None)
    decided_by: str | None = Field(default=None, max_length=255)
    result_version_id: int | None = Field(default=None, foreign_key="prompt_version.id")
