"""From Label Studio tasks to predictions: render the prompt, ask the engine, build the regions."""

from __future__ import annotations

from dataclasses import dataclass


class TaskDataError(ValueError):
    """A task Prompter cannot label (missing data key, empty or too long text); says which and why."""


@dataclass
class TaskPrediction:
    result: list[dict]  # Label Studio regions: choices, response textarea, prompt textarea echo
    score: float
    labels: dict[str, list[str]]  # control name -> chosen labels
    response: str | None
    latency_s: float


# predict_tasks(engine, schema, tasks, prompt_template) -> list[TaskPrediction]  (written next)
