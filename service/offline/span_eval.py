"""``prompter eval`` for a Labels control: span precision / recall / F1, exact and partial, micro and per label.

Gold spans come from a labeled line's ``spans`` (``[{"start", "end", "label"}]``, as in
``nlupp-hotels/slots.jsonl``) or from the task's first annotation's regions of the control. Predictions come
from the same resumable path as ``prompter label``.
"""

from __future__ import annotations

from typing import Any

from constraints.base import Engine
from service import span_metrics
from service.labeling import ProjectSchema, SpanControl
from service.offline.label import score_version
from service.offline.tasks_io import InputError, InputTask
from service.spans import gold_keys, parse_key


def span_control(schema: ProjectSchema, name: str | None) -> SpanControl | None:
    """The Labels control ``--control`` names, or the only kind of control there is; None: score Choices."""
    for control in schema.spans:
        if control.name == name:
            return control
    if name is None and schema.spans and not schema.choices:
        return schema.spans[0]
    return None


def gold_spans(item: InputTask, control: SpanControl) -> list[tuple[int, int, str]] | None:
    data = item.task.get("data") or {}
    if isinstance(data.get("spans"), list):
        try:
            return sorted((int(s["start"]), int(s["end"]), str(s["label"])) for s in data["spans"])
        except (KeyError, TypeError, ValueError):
            return None
    for annotation in item.task.get("annotations") or []:
        if isinstance(annotation, dict) and not annotation.get("was_cancelled"):
            return [parse_key(k) for k in gold_keys(control, annotation.get("result") or [])]
    return None


def evaluate_spans(engine: Engine, session, source, control: SpanControl, versions: list[Any], args) -> dict[str, Any]:
    """Each version's span scores on the items with gold spans (a task with an empty gold list counts)."""
    items = [i for i in source.items if not i.error and gold_spans(i, control) is not None]
    if not items:
        raise InputError(f"none of the {len(source.items)} tasks has gold spans for '{control.name}'")
    gold = [gold_spans(i, control) for i in items]
    runs = []
    for version in versions:
        mv, summary, predictions = score_version(
            engine, session, source.project_id, source.schema, version, items, args
        )
        scored = [i for i in range(len(items)) if items[i].id in predictions]
        pred = [[parse_key(k) for k in predictions[items[i].id].labels.get(control.name, [])] for i in scored]
        scores = span_metrics.both([gold[i] for i in scored], pred)
        runs.append({"prompt_version_id": version.id, "model_version": mv, "tasks": len(scored), **scores})
    first = runs[0]
    return {
        "control": control.name,
        "span_f1": first["exact"]["f1"],
        "span_f1_partial": first["partial"]["f1"],
        "precision": first["exact"]["precision"],
        "recall": first["exact"]["recall"],
        "per_label": first["exact"]["per_label"],
        "with_gold": len(items),
        "tasks": len(source.items),
        "versions": runs,
    }
