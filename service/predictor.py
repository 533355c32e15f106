"""The one decision path: (tasks, prompt version) -> predictions, for every caller.

``/predict`` (through the model queue), warming, corrections, refinements, ``prompter label``, ``prompter
eval`` and ``prompter simulate`` all call ``label_tasks``, or its two halves: ``prepare`` (checks the tasks,
retrieves each one's demonstrations from the version's pool and computes the label-knowledge and corrections
evidence, before any model work) and ``decide`` (the model's label log-probabilities, fused with that evidence
by the version's weights, and the Label Studio regions). The queue runs ``prepare`` before queuing and
``decide`` in its worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from constraints.base import Decision, Engine
from constraints.decisions import decision_from_scores
from constraints.errors import BadInput
from service import evidence, fusion
from service.demonstrations import answer_lead, examples_for
from service.labeling import ChoiceControl, ProjectSchema, ValueControl
from service.prompting import build_query, render_value, shown_prompt
from service.span_decisions import decide_spans, phrase_evidence, span_shots
from service.store.models import PredictionCreate, as_task_id


class TaskDataError(BadInput):
    """A task Prompter cannot label (missing data key, empty or too long text); says which and why."""


@dataclass(frozen=True)
class Prompt:
    """What a prompt version decides with: its template and its demonstration pool (``{"pool", "k"}``).

    Equal (and hashed) by text, version id, weights and ``model``: the queue decides a batch under one prompt.
    """

    text: str
    examples: dict[str, Any] | None = field(default=None, compare=False)
    version_id: int | None = None
    decision: dict[str, Any] | None = field(default=None, compare=False)  # {control: weights}; None: defaults
    model: bool = True  # False: decide without the model's evidence (the ablation), no forward pass
    decision_key: str = field(default="", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision_key", json.dumps(self.decision, sort_keys=True) if self.decision else "")

    @classmethod
    def of(cls, version: Any) -> Prompt:
        """From a stored ``PromptVersion`` (or anything with ``text``, ``examples``, ``id`` and ``decision``)."""
        return cls(version.text, version.examples, version.id, getattr(version, "decision", None))

    def weights(self, control: ChoiceControl) -> fusion.Weights:
        """The weights this version decides ``control`` with: its own, else the defaults for its kind; without
        the model (``model=False``) the ones fitted without its evidence."""
        stored = self._stored(control)
        key = "weights" if self.model else "weights_without_model"
        if stored and stored.get(key):
            return fusion.Weights.from_dict(stored[key])
        return fusion.default_weights(control.label_set.multiple, self.model)

    def reference(self, control: ChoiceControl) -> np.ndarray | None:
        """The model's mean label log-probabilities over the annotated tasks the weights were fitted on."""
        stored = self._stored(control)
        return np.asarray(stored["reference"], dtype=np.float64)[None] if stored and stored.get("reference") else None

    def _stored(self, control: ChoiceControl) -> dict[str, Any] | None:
        """The version's record for ``control``, if it was fitted for this very label set."""
        stored = (self.decision or {}).get(control.name)
        return stored if stored and stored.get("labels") == list(control.label_set.labels) else None


@dataclass(frozen=True)
class LeaveOut:
    """Pool entries a task may not see: ``exclude`` for every task; ``own`` each task its own id (a pool that
    holds the scored tasks, scored as it will serve new ones)."""

    exclude: frozenset[int] = frozenset()
    own: bool = False


@dataclass(frozen=True)
class TaskContext:
    """What ``prepare`` found for one task, before any model work."""

    shots: str = ""  # the template's ``{examples}``: the task's retrieved demonstrations
    evidence: dict[str, np.ndarray] = field(default_factory=dict, compare=False)  # control -> (labels, F)
    span_shots: dict[str, str] = field(default_factory=dict)  # Labels control -> its demonstrations
    span_evidence: dict[str, list] = field(default_factory=dict, compare=False)  # Labels control -> corrections' spans


@dataclass
class TaskPrediction:
    result: list[dict]  # Label Studio regions: choices, spans, response textarea, prompt textarea echo
    score: float
    labels: dict[str, list[str]]  # control name -> chosen labels (spans: "start:end:label" keys)
    response: str | None
    latency_s: float
    probs: dict[str, dict[str, float]] | None = None  # control name -> label -> probability
    evidence: dict[str, np.ndarray] | None = None  # control name -> (labels, F) what the decision weighed
    logp: dict[str, np.ndarray] | None = None  # control name -> the model's raw label log-probabilities

    def row(self, project_id: str, task_id: int | None, prompt_version_id: int, model_version: str) -> PredictionCreate:
        """The stored form of this prediction."""
        return PredictionCreate(
            project_id=project_id,
            task_id=task_id,
            prompt_version_id=prompt_version_id,
            model_version=model_version,
            labels=self.labels,
            response=self.response,
            result=self.result,
            score=self.score,
            latency_s=self.latency_s,
        )


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


def _task_ids(tasks: list[Any]) -> list[int | None]:
    return [as_task_id(t.get("id")) if isinstance(t, dict) else None for t in tasks]


def prepare(
    engine: Engine,
    schema: ProjectSchema,
    tasks: list[Any],
    prompt: Prompt,
    leave_out: LeaveOut | None = None,
    max_chars: int = 20_000,
) -> list[TaskContext]:
    """Check the tasks (TaskDataError names the first bad one), retrieve their demonstrations and compute the
    evidence that needs no model."""
    datas = check_tasks(schema, tasks, max_chars)
    if not datas:
        return []
    leave_out = leave_out or LeaveOut()
    own = _task_ids(tasks) if leave_out.own else None
    exclude = set(leave_out.exclude)
    shots = None
    if "{examples}" in prompt.text:
        shots = examples_for(prompt.examples, schema, datas, answer_lead(engine), exclude, own)
    found = {
        c.name: evidence.task_evidence(schema, c, prompt.text, prompt.examples, datas, own, exclude)
        for c in schema.choices
    }
    lead = answer_lead(engine)
    span_found = {
        c.name: span_shots(prompt.examples, schema, c, datas, lead, exclude, own)
        for c in schema.spans
        if "{examples}" in prompt.text
    }
    span_known = {c.name: phrase_evidence(prompt.examples, schema, c, datas, exclude, own) for c in schema.spans}
    return [
        TaskContext(
            shots=shots[i] if shots else "",
            evidence={name: x[i] for name, x in found.items()},
            span_shots={name: x[i] for name, x in span_found.items()},
            span_evidence={name: x[i] for name, x in span_known.items() if x is not None},
        )
        for i in range(len(datas))
    ]


def decide(
    engine: Engine,
    schema: ProjectSchema,
    tasks: list[Any],
    prompt: Prompt,
    contexts: list[TaskContext],
    response_max_tokens: int = 0,
) -> list[TaskPrediction]:
    """One prediction per prepared task, same order; the model batched per Choices control."""
    datas = [t["data"] for t in tasks]
    if not datas:
        return []
    shots = [c.shots for c in contexts]
    started = time.perf_counter()
    decisions: dict[str, list[Decision]] = {}
    weighed: dict[str, np.ndarray] = {}
    raw: dict[str, np.ndarray] = {}
    for control in schema.choices:
        x = np.stack([c.evidence[control.name] for c in contexts])
        if prompt.model:
            queries = [
                build_query(prompt.text, schema, d, control, examples=e) for d, e in zip(datas, shots, strict=True)
            ]
            logp = np.asarray(engine.label_logprobs(queries, control.label_set), dtype=np.float64)
            reference = prompt.reference(control)
            if reference is None:
                reference = evidence.model_reference(engine, schema, control, prompt.text, prompt.examples)
            x = evidence.with_model(x, logp, reference)
            raw[control.name] = logp
        weighed[control.name] = x
        decisions[control.name] = fused_decisions(x, control, prompt.weights(control))
    valued = {c.name: value_decisions(engine, schema, c, prompt.text, datas, shots) for c in schema.values}
    tagged = {
        c.name: decide_spans(
            engine,
            schema,
            c,
            prompt.text,
            datas,
            [x.span_shots.get(c.name, "") for x in contexts],
            [x.span_evidence.get(c.name) for x in contexts],
        )
        for c in schema.spans
    }

    responses: list[str | None] = [None] * len(datas)
    if schema.response and response_max_tokens > 0:
        queries = []
        for i, d in enumerate(datas):
            base = build_query(prompt.text, schema, d, None, examples=shots[i])
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
        for control in schema.values:
            d, value = valued[control.name][i]
            labels[control.name] = list(d.labels)
            probs[control.name] = d.probs
            scores.append(d.score)
            result.append(_region(control.name, control.to_name, control.kind, {control.kind: value}))
        for control in schema.spans:
            found = tagged[control.name][i]
            labels[control.name] = found.keys
            scores.append(found.score)
            result.extend(found.regions)
        if schema.response and responses[i] is not None:
            r = schema.response
            result.append(_region(r.name, r.to_name, "textarea", {"text": [responses[i]]}))
        if schema.prompt:
            p = schema.prompt
            result.append(_region(p.name, p.to_name, "textarea", {"text": [shown_prompt(prompt.text, schema)]}))
        score = min(scores) if scores else 1.0
        evid = {name: x[i] for name, x in weighed.items()}
        logps = {name: x[i] for name, x in raw.items()}
        out.append(TaskPrediction(result, score, labels, responses[i], latency, probs, evid, logps))
    return out


def fused_decisions(x: np.ndarray, control: ChoiceControl, weights: fusion.Weights) -> list[Decision]:
    """One decision per task from its (labels, F) evidence: single choice the most probable label, its
    probability the score; multiple choice every label whose probability of applying reaches the weights'
    threshold, the score the probability that the chosen set is exactly right."""
    ls = control.label_set
    probs = fusion.probabilities(x, weights, multiple=ls.multiple)
    chosen, scores = fusion.decide(
        probs, ls.multiple, weights.threshold, ls.allow_empty, (weights.set_scale, weights.set_shift)
    )
    out = []
    for i, row in enumerate(probs):
        named = {label: float(p) for label, p in zip(ls.labels, row, strict=True)}
        picked = (
            (ls.labels[int(chosen[i])],)
            if not ls.multiple
            else tuple(x for x, c in zip(ls.labels, chosen[i], strict=True) if c)
        )
        out.append(Decision(picked, min(max(float(scores[i]), 1e-6), 1.0), named))
    return out


def value_decisions(
    engine: Engine, schema: ProjectSchema, control: ValueControl, template: str, datas: list, shots: list[str]
) -> list[tuple[Decision, Any]]:
    """A Rating, Number or Taxonomy value per task: the most probable of the control's values under the label
    trie (the model alone; no label knowledge or corrections for values), its probability the score."""
    queries = [build_query(template, schema, d, control, examples=e) for d, e in zip(datas, shots, strict=True)]
    logp = torch.as_tensor(engine.label_logprobs(queries, control.label_set), dtype=torch.float64)
    out = []
    for row in logp:
        d = decision_from_scores(row, control.label_set, 0.0)
        out.append((d, control.values[control.label_set.labels.index(d.labels[0])]))
    return out


# The model half of the path on prepared tasks, as a value: ``direct_predictor`` decides in this thread, the
# service's agent passes one through its model queue at batch priority.
Predict = Callable[[ProjectSchema, list[dict[str, Any]], Prompt, list[TaskContext]], list[TaskPrediction]]


def direct_predictor(engine: Engine) -> Predict:
    def predict(schema, tasks, prompt, contexts):
        return decide(engine, schema, tasks, prompt, contexts)

    return predict


def label_tasks(
    engine: Engine,
    schema: ProjectSchema,
    tasks: list[Any],
    prompt: Prompt,
    leave_out: LeaveOut | None = None,
    max_chars: int = 20_000,
    response_max_tokens: int = 0,
) -> list[TaskPrediction]:
    """``prepare`` then ``decide``, in this thread (callers outside the service's model queue)."""
    contexts = prepare(engine, schema, tasks, prompt, leave_out, max_chars)
    return decide(engine, schema, tasks, prompt, contexts, response_max_tokens)


def _region(from_name: str, to_name: str, kind: str, value: dict) -> dict:
    return {"from_name": from_name, "to_name": to_name, "type": kind, "value": value}
