"""The shapes of Label Studio's ML backend protocol (see docs/label-studio.md); extra fields are kept."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LSModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class HealthResponse(BaseModel):
    status: str = "UP"
    model_class: str = "Prompter"
    model_state: str
    model_id: str | None = None
    model_error: str | None = None


class SetupRequest(LSModel):
    project: str | int | None = None
    label_config: str = Field(alias="schema")
    hostname: str | None = None
    access_token: str | None = Field(default=None, exclude=True, repr=False)  # Label Studio's: never stored or shown
    extra_params: Any = None  # null or a dict; not used yet


class SetupResponse(BaseModel):
    model_version: str


class PredictParams(LSModel):
    context: dict[str, Any] | None = None


class PredictRequest(LSModel):
    tasks: list[Any] | None = None
    project: str | int | None = None
    label_config: str | None = None
    params: PredictParams | None = None


class TaskResult(BaseModel):
    result: list[dict[str, Any]]
    score: float
    model_version: str


class PredictResponse(BaseModel):
    results: list[TaskResult]


class WebhookEvent(LSModel):
    action: str
    annotation: dict[str, Any] | None = None
    annotations: list[Any] | None = None
    task: dict[str, Any] | None = None
    project: dict[str, Any] | None = None


class WebhookResponse(BaseModel):
    status: str  # "ok" | "ignored"
    action: str
    annotation_id: int | None = None
    deleted: int | None = None


class VersionsResponse(BaseModel):
    versions: list[str]
