"""From Label Studio tasks to predictions: render the prompt, ask the engine, build the regions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from constraints.base import Decision, Engine
from service.labeling import ProjectSchema
from service.prompting import build_query, render_value, shown_prompt


class TaskDataError(ValueError):
    """A task Prompter cannot label (missing data key, empty or too long text); says which and why."""


@dataclass
class TaskPrediction:
    result: list[dict]  # Label Studio regions: choices, response textarea, prompt textarea echo
    score: float
    labels: dict[str, list[str]]  # control name -> chosen labels
    response: str | None
    latency_s: float
    probs: dict[str, dict[str, float]] | None = None  # control name -> label -> probability


def check_tasks(schema: ProjectSchema, tasks: list[Any], max_chars: int) -> list[dict[str, Any]]:
    """The tasks' data dicts; TaskDataError names the first task that cannot be labeled and why."""
    out = []
    for i, task in enumerate(tasks):
        where = f"task {i}" + (f" (id {task.get('id')})" if isinstance(task, dict) and task.get("id") else "")
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise TaskDataError(f"{where} has no 'data' object")
        for obj in schema.objects:
            if obj.value_key not in data:
                raise TaskDataError(f"{where} has no data key '{obj.value_key}' (needed by <{obj.name}>)")
            text = render_value(obj, data[obj.value_key])
            if not text.strip():
                raise TaskDataError(f"{where}: '{obj.value_key}' is empty")
            if len(text) > max_chars:
                raise TaskDataError(
                    f"{where}: '{obj.value_key}' has {len(text)} characters, more than the limit of {max_chars}"
                )
        out.append(data)
    return out


def predict_tasks(
    engine: Engine,
    schema: ProjectSchema,
    tasks: list[Any],
    prompt: str,
    max_chars: int = 20_000,
    response_max_tokens: int = 0,
    examples: list[str] | None = None,
) -> list[TaskPrediction]:
    """One prediction per task, same order; batched per Choices control.

    ``examples`` (one string per task) fills the prompt's ``{examples}`` variable.
    """
    datas = check_tasks(schema, tasks, max_chars)
    if not datas:
        return []
    shots = examples if examples is not None else [""] * len(datas)
    started = time.perf_counter()
    decisions: dict[str, list[Decision]] = {}
    for control in schema.choices:
        queries = [build_query(prompt, schema, d, control, examples=e) for d, e in zip(datas, shots, strict=True)]
        decisions[control.name] = engine.decide(queries, control.label_set)

    responses: list[str | None] = [None] * len(datas)
    if schema.response and response_max_tokens > 0:
        queries = []
        for i, d in enumerate(datas):
            base = build_query(prompt, schema, d, None, examples=shots[i])
            answered = "".join(
                f"{c.name.capitalize()}: {', '.join(c.label_set.name_of(x) for x in decisions[c.name][i].labels)}\n"
                for c in schema.choices
            )
            queries.append(type(base)(base.prefix, base.body + answered, base.cue))
        responses = list(engine.generate(queries, response_max_tokens))
    latency = (time.perf_counter() - started) / len(datas)

    out = []
    for i in range(len(datas)):
        result: list[dict] = []
        labels: dict[str, list[str]] = {}
        probs: dict[str, dict[str, float]] = {}
        scores = []
        for control in schema.choices:
            d = decisions[control.name][i]
            labels[control.name] = list(d.labels)
            probs[control.name] = d.probs
            scores.append(d.score)
            result.append(_region(control.name, control.to_name, "choices", {"choices": list(d.labels)}))
        if schema.response and responses[i] is not None:
            r = schema.response
            result.append(_region(r.name, r.to_name, "textarea", {"text": [responses[i]]}))
        if schema.prompt:
            p = schema.prompt
            result.append(_region(p.name, p.to_name, "textarea", {"text": [shown_prompt(prompt, schema)]}))
        score = min(scores) if scores else 1.0
        out.append(TaskPrediction(result, score, labels, responses[i], latency, probs))
    return out


def _region(from_name: str, to_name: str, kind: str, value: dict) -> dict:
    return {"from_name": from_name, "to_name": to_name, "type": kind, "value": value}
