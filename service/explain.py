"""What the response TextArea says: why the labels were chosen, not the model's free text (by default).

For each Choices control: the chosen labels with their probabilities and the runner-up; the nearest annotated
task behind the decision (its Label Studio id, from the version's pool of corrections); and, once measured, this
prompt's accuracy on the project's annotated tasks against the active prompt's ("this prompt: 84% on 120
annotated tasks; active prompt: 79%"), read from the stored evaluations. A project without annotations is told
there is nothing to measure against yet.

``PROMPTER_RESPONSE_MODE`` picks explain, generate (the model's free text) or both; ``auto`` explains on a local
model: the embedded 270M model's free text echoes the customer and was most of the annotator's wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func
from sqlmodel import Session, select

from service import evidence
from service.labeling import ChoiceControl, ProjectSchema
from service.predictor import Prompt, TaskPrediction
from service.settings import settings
from service.store import repo
from service.store.models import Annotation, Evaluation, as_task_id

Mode = Literal["explain", "generate", "both"]


def response_mode() -> Mode:
    """The configured mode; ``auto``: explain on the local engine (measured, README), both on vLLM."""
    mode = settings.response_mode
    if mode != "auto":
        return mode
    return "both" if settings.engine == "vllm" else "explain"


def generates() -> bool:
    """Whether an answer with a response runs the model's free-text generation."""
    return response_mode() != "explain" and settings.response_max_tokens > 0


def explains() -> bool:
    return response_mode() != "generate"


@dataclass(frozen=True)
class Measured:
    """A version's latest stored evaluation for one control."""

    version_id: int
    accuracy: float
    tasks: int


@dataclass(frozen=True)
class Standing:
    """What the project's ground truth says about the prompt: ``annotated`` tasks, this version's latest
    evaluation and the active version's (None: not measured yet)."""

    annotated: int
    this: Measured | None
    active: Measured | None
    is_active: bool


@dataclass(frozen=True)
class Nearest:
    task_id: int | None
    labels: tuple[str, ...]
    similarity: float


def annotated_tasks(session: Session, project_id: str) -> int:
    """How many tasks of the project have a stored annotation."""
    statement = select(func.count(func.distinct(Annotation.task_id))).where(Annotation.project_id == project_id)
    return int(session.exec(statement).one() or 0)


def _measured(evaluation: Evaluation | None) -> Measured | None:
    if evaluation is None or evaluation.accuracy is None or not evaluation.tasks:
        return None
    return Measured(evaluation.prompt_version_id, float(evaluation.accuracy), int(evaluation.tasks))


def standing(session: Session, project_id: str, version_id: int | None, control: str) -> Standing:
    """This version's latest evaluation and the active version's on the very same tasks (the live evaluation's
    comparison); without one, the active version's own latest evaluation."""
    active = repo.active_prompt(session, project_id)
    active_id = active.id if active else None
    comparison = repo.latest_comparison(session, version_id) if version_id is not None else None
    this = _measured(comparison.evaluation) if comparison else None
    other = None
    if active_id is not None and active_id != version_id:
        same_tasks = comparison.active if comparison else None
        if same_tasks is not None and same_tasks.prompt_version_id == active_id:
            other = _measured(same_tasks)
        else:
            other = _measured(repo.latest_evaluation(session, active_id))
    return Standing(
        annotated=annotated_tasks(session, project_id),
        this=this,
        active=other,
        is_active=active_id is not None and active_id == version_id,
    )


def nearest_annotated(
    schema: ProjectSchema, control: ChoiceControl, prompt: Prompt, datas: list[dict[str, Any]], chosen: list[list[str]]
) -> list[Nearest | None]:
    """Per task, the nearest pool entry carrying one of its chosen labels (else the nearest at all)."""
    pool, sims = evidence.pool_similarity(schema, control, prompt.examples, datas)
    if not pool:
        return [None] * len(datas)
    out: list[Nearest | None] = []
    for i, labels in enumerate(chosen):
        backing = [j for j, e in enumerate(pool) if set(e["labels"].get(control.name, [])) & set(labels)]
        candidates = backing or list(range(len(pool)))
        j = max(candidates, key=lambda k: sims[i, k])
        entry = pool[j]
        out.append(Nearest(as_task_id(entry.get("task_id")), tuple(entry["labels"][control.name]), float(sims[i, j])))
    return out


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def decision_line(control: ChoiceControl, labels: list[str], probs: dict[str, float], threshold: float) -> str:
    """ "intent: PayBill 86%; runner-up CheckAccountBalance 9%". Multiple choice, where each probability is that
    the label applies and a label is chosen from ``threshold`` up (the version's weights): "intents: a 91%, b 40%
    (chosen from 25%); highest not chosen c 12%"."""
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])
    most_first = sorted(labels, key=lambda x: -probs.get(x, 0.0))
    chosen = ", ".join(f"{x} {_pct(probs.get(x, 0.0))}" for x in most_first) or "no label chosen"
    multiple = control.label_set.multiple
    if multiple:
        chosen += f" (chosen from {_pct(threshold)})"
    others = [(x, p) for x, p in ranked if x not in labels]
    lead = "highest not chosen" if multiple else "runner-up"
    runner = f"; {lead} {others[0][0]} {_pct(others[0][1])}" if others else ""
    return f"{control.name}: {chosen}{runner}"


def nearest_line(nearest: Nearest | None, task_id: int | None) -> str:
    if nearest is None:
        return "nearest annotated task: none yet (no corrections in this prompt's pool)"
    which = "this task" if nearest.task_id is not None and nearest.task_id == task_id else f"#{nearest.task_id}"
    return f"nearest annotated task: {which} ({', '.join(nearest.labels)}), similarity {nearest.similarity:.2f}"


def standing_line(s: Standing) -> str:
    if s.annotated == 0:
        return "no annotated tasks to measure this prompt against yet"
    if s.this is None:
        line = f"this prompt: not measured yet ({s.annotated} annotated tasks)"
    else:
        which = "this prompt (active)" if s.is_active else "this prompt"
        line = f"{which}: {_pct(s.this.accuracy)} on {s.this.tasks} annotated tasks"
    if s.active is not None:
        same = s.this is not None and s.this.tasks == s.active.tasks
        line += f"; active prompt: {_pct(s.active.accuracy)}" + ("" if same else f" on {s.active.tasks}")
    return line


def explanation(lines: list[str]) -> str:
    return "\n".join(lines)


def explain_predictions(
    session: Session,
    project_id: str,
    schema: ProjectSchema,
    prompt: Prompt,
    tasks: list[dict[str, Any]],
    predictions: list[TaskPrediction],
) -> None:
    """Write each prediction's response region (and ``response``): the explanation, after the model's free text
    in "both" mode. A config without a response TextArea or Choices is left alone."""
    if schema.response is None or not schema.choices or not predictions:
        return
    datas = [t["data"] for t in tasks]
    task_ids = [as_task_id(t.get("id")) for t in tasks]
    per_control = {}
    for control in schema.choices:
        chosen = [p.labels.get(control.name, []) for p in predictions]
        nearest = nearest_annotated(schema, control, prompt, datas, chosen)
        stood = standing(session, project_id, prompt.version_id, control.name)
        per_control[control.name] = (nearest, stood, prompt.weights(control).threshold)
    for i, prediction in enumerate(predictions):
        lines = []
        for control in schema.choices:
            nearest, stood, threshold = per_control[control.name]
            probs = (prediction.probs or {}).get(control.name, {})
            lines.append(decision_line(control, prediction.labels.get(control.name, []), probs, threshold))
            lines.append(nearest_line(nearest[i], task_ids[i]))
            line = standing_line(stood)
            lines.append(line if len(schema.choices) == 1 else f"{control.name}, {line}")
        text = explanation(lines)
        if response_mode() == "both" and prediction.response:
            text = f"{prediction.response.strip()}\n\n{text}"
        prediction.response = text
        _set_response_region(prediction, schema, text)


def _set_response_region(prediction: TaskPrediction, schema: ProjectSchema, text: str) -> None:
    r = schema.response
    assert r is not None
    region = {"from_name": r.name, "to_name": r.to_name, "type": "textarea", "value": {"text": [text]}}
    kept = [x for x in prediction.result if x.get("from_name") != r.name]
    at = next((k for k, x in enumerate(kept) if x.get("type") == "textarea"), len(kept))
    prediction.result = kept[:at] + [region] + kept[at:]
