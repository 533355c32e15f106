"""The store's tables, with their API shapes: projects, prompt versions, predictions, annotations and evaluations;
the agent's corrections, refinement runs and proposals; the task data kept to re-score annotated tasks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# Constraint names fixed by convention, so migrations can name what they alter on every database.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PROMPT_SOURCES: tuple[str, ...] = ("default", "annotator", "agent", "user")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_task_id(value: Any) -> int | None:
    """A Label Studio id as it arrives (an int, a digit string, or an object with ``id``); None otherwise."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _ts(**kwargs: Any) -> Any:
    """A timezone-aware timestamp column (naive on SQLite, which keeps no zone; values are UTC)."""
    return Field(sa_type=sa.DateTime(timezone=True), **kwargs)


# Projects


class ProjectBase(SQLModel):
    label_config: str = Field(default="", sa_type=sa.Text)


class Project(ProjectBase, table=True):
    id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class ProjectPublic(ProjectBase):
    id: str
    created_at: datetime
    updated_at: datetime


# Prompt versions


class PromptVersionBase(SQLModel):
    text: str = Field(sa_type=sa.Text)
    source: str = Field(default="default", max_length=16)  # one of PROMPT_SOURCES
    author: str | None = Field(default=None, max_length=255)
    note: str | None = Field(default=None, sa_type=sa.Text)
    metrics: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    # the demonstration pool: {"pool": [...], "k": 8}
    examples: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    # how the version decides: {control: fused-decision weights}; None: the defaults (service.fusion)
    decision: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)


class PromptVersion(PromptVersionBase, table=True):
    __tablename__ = "prompt_version"
    __table_args__ = (  # at most one active version per project (migration 0004)
        sa.Index(
            "uq_prompt_version_one_active",
            "project_id",
            unique=True,
            sqlite_where=sa.text("is_active"),
            postgresql_where=sa.text("is_active"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="project.id", index=True, max_length=64)
    parent_id: int | None = Field(default=None, foreign_key="prompt_version.id")
    is_active: bool = Field(default=False)
    created_at: datetime = _ts(default_factory=utcnow)


class PromptVersionPublic(PromptVersionBase):
    id: int
    project_id: str
    parent_id: int | None
    is_active: bool
    created_at: datetime


# Predictions


class PredictionBase(SQLModel):
    project_id: str = Field(foreign_key="project.id", index=True, max_length=64)
    task_id: int | None = Field(default=None)  # None for ad-hoc tasks sent without an id
    prompt_version_id: int = Field(foreign_key="prompt_version.id", index=True)
    model_version: str = Field(max_length=255)
    labels: dict[str, list[str]] = Field(default_factory=dict, sa_type=sa.JSON)
    response: str | None = Field(default=None, sa_type=sa.Text)
    result: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    score: float = 0.0
    latency_s: float = 0.0


class Prediction(PredictionBase, table=True):
    __table_args__ = (sa.UniqueConstraint("project_id", "task_id", "model_version", name="uq_prediction_task_version"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _ts(default_factory=utcnow)


class PredictionCreate(PredictionBase):
    pass


# Annotations (copied from Label Studio's webhooks)


class AnnotationBase(SQLModel):
    project_id: str = Field(foreign_key="project.id", index=True, max_length=64)
    task_id: int = Field(index=True)
    choices: dict[str, list[str]] = Field(default_factory=dict, sa_type=sa.JSON)
    prompt_text: str | None = Field(default=None, sa_type=sa.Text)
    completed_by: int | None = None
    result: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    lead_time: float | None = None
    ls_created_at: datetime | None = _ts(default=None)
    ls_updated_at: datetime | None = _ts(default=None)


class Annotation(AnnotationBase, table=True):
    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})  # Label Studio's id
    stored_at: datetime = _ts(default_factory=utcnow)


class AnnotationCreate(AnnotationBase):
    id: int


class AnnotationPublic(AnnotationBase):
    id: int
    stored_at: datetime


# Evaluations (`prompter eval` and live evaluations against ground truth)

EVALUATION_TRIGGERS: tuple[str, ...] = (
    "cli",
    "typed",
    "accepted",
    "activated",
    "annotations",
    "comparison",
    "catch_up",
)
EvaluationStatus = Literal["ok", "failed"]


class EvaluationBase(SQLModel):
    """One prompt version scored on ground truth, by a `prompter eval` run (``trigger`` "cli") or by the live
    evaluator (``agent.live_eval``) on the project's annotated tasks, compared with the version active then.
    The curves are ``service.metrics``'s output. A failed evaluation (``status`` "failed") has no figures and
    says why in ``reason``."""

    project_id: str = Field(foreign_key="project.id", index=True, max_length=64)
    prompt_version_id: int = Field(foreign_key="prompt_version.id", index=True)
    run_id: str = Field(max_length=32)  # shared by the rows one `prompter eval` run writes
    model_version: str = Field(max_length=255)
    source: str = Field(sa_type=sa.Text)  # where the ground truth came from (a file, a Label Studio project)
    control: str = Field(max_length=255)  # the Choices control scored
    tasks: int  # tasks scored (with ground truth and a prediction)
    accuracy: float | None  # None when the evaluation failed
    macro_f1: float | None
    micro_f1: float | None
    ece: float | None
    target_accuracy: float | None = None
    threshold: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)  # the point reaching it, if any
    per_label: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)  # label -> P, R, F1, support
    confusion: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)  # {labels, matrix}; single choice only
    reliability: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)  # calibration bins
    coverage: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)  # accuracy vs coverage points
    # live evaluations (migration 0006)
    trigger: str = Field(default="cli", max_length=32)  # one of EVALUATION_TRIGGERS
    status: str = Field(default="ok", max_length=16)  # EvaluationStatus
    reason: str | None = Field(default=None, sa_type=sa.Text)  # why it failed, or which tasks were left out
    tasks_key: str | None = Field(default=None, max_length=64)  # digest of (task id, gold) scored: same tasks
    compared_with_id: int | None = Field(default=None, foreign_key="prompt_version.id")  # the active version
    compared_accuracy: float | None = None  # the active version's accuracy on the same tasks
    fixes: list[int] = Field(default_factory=list, sa_type=sa.JSON)  # task ids right here, wrong under the active
    breaks: list[int] = Field(default_factory=list, sa_type=sa.JSON)  # task ids wrong here, right under the active
    p_value: float | None = None  # one-sided exact McNemar (sign) test on fixes vs breaks
    significant: bool | None = None  # beats the active version by the agent's rule (agent.evaluate.beats)
    outcomes: dict[str, float] | None = Field(default=None, sa_type=sa.JSON)  # task id -> its F1, for pairing
    seconds: float | None = None  # how long the scoring took


class Evaluation(EvaluationBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _ts(default_factory=utcnow)


class EvaluationCreate(EvaluationBase):
    pass


class EvaluationPublic(EvaluationBase):
    id: int
    created_at: datetime


class EvaluationHeadline(SQLModel):
    """A version's latest evaluation in the prompt history: its headline figures and its comparison only."""

    id: int
    tasks: int
    accuracy: float | None
    macro_f1: float | None
    ece: float | None
    created_at: datetime
    trigger: str = "cli"
    status: str = "ok"
    reason: str | None = None
    compared_with_id: int | None = None
    compared_accuracy: float | None = None
    fixes: int = 0  # how many
    breaks: int = 0
    p_value: float | None = None
    significant: bool | None = None


# The agent's tables

ProposalStatus = Literal["pending", "accepted", "rejected", "failed", "superseded"]
RunStatus = Literal["running", "done", "failed"]
RUNNING = "running"


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
    decision: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)  # the weights it decides with
    status: str = Field(default="pending", max_length=16, index=True)  # ProposalStatus
    reason: str | None = Field(default=None, sa_type=sa.Text)
    metrics: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    created_at: datetime = _ts(default_factory=utcnow)
    decided_at: datetime | None = _ts(default=None)
    decided_by: str | None = Field(default=None, max_length=255)
    result_version_id: int | None = Field(default=None, foreign_key="prompt_version.id")
