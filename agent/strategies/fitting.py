"""The combiner's weights fitted on annotated tasks: how a candidate prompt version will decide.

The evidence of each annotated task is computed leave-one-out (the task is not in its own pool, its own
demonstrations leave it out), through the one decision path; the model's calibration reference is the mean of
its label log-probabilities over the same tasks (batch calibration), stored with the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from constraints.base import Engine
from service import fusion
from service.evidence import MODEL
from service.labeling import ProjectSchema
from service.predictor import LeaveOut, Predict, Prompt, TaskPrediction, prepare
from service.store.tasks import AnnotatedTask


def decision_record(schema: ProjectSchema, tasks: list[AnnotatedTask], preds: list[TaskPrediction]) -> dict[str, Any]:
    """{control: {"weights", "reference", "labels", "annotated"}} from leave-one-out predictions of ``tasks``.

    Below ``fusion.MIN_ANNOTATED`` usable tasks a control keeps the defaults (``source: "default"``), and the
    record says so."""
    out: dict[str, Any] = {}
    for control in schema.choices:
        labels = control.label_set.labels
        index = {x: j for j, x in enumerate(labels)}
        rows = [(t, p) for t, p in zip(tasks, preds, strict=True) if control.name in t.gold and p.evidence]
        if not control.label_set.multiple:  # a single-choice gold outside the set cannot be fitted on
            rows = [(t, p) for t, p in rows if len(t.gold[control.name]) == 1 and t.gold[control.name][0] in index]
        x = np.stack([p.evidence[control.name] for _, p in rows]) if rows else np.zeros((0, len(labels), fusion.F))
        reference = None
        if rows and all(p.logp and control.name in p.logp for _, p in rows):
            raw = np.stack([p.logp[control.name] for _, p in rows])
            reference = fusion.model_feature(raw).mean(axis=0)  # each label's mean log-probability: the batch
            x[..., MODEL] = fusion.model_feature(raw, batch_calibrate=True, reference=reference[None])
        if control.label_set.multiple:
            gold = np.zeros((len(rows), len(labels)))
            for i, (t, _) in enumerate(rows):
                for label in t.gold[control.name]:
                    if label in index:
                        gold[i, index[label]] = 1.0
        else:
            gold = np.array([index[t.gold[control.name][0]] for t, _ in rows], dtype=np.int64)
        multiple = control.label_set.multiple
        weights = fusion.fit(x, gold, multiple=multiple)
        alone = fusion.fit(x, gold, multiple, fusion.default_weights(multiple, model=False), use=fusion.WITHOUT_MODEL)
        out[control.name] = {
            "weights": weights.to_dict(),
            "weights_without_model": alone.to_dict(),  # how it decides when the model's evidence is off
            "reference": reference.tolist() if reference is not None and weights.source == "fitted" else None,
            "labels": list(labels),
            "annotated": len(rows),
            "note": "fitted on the annotated tasks, leave-one-out"
            if weights.source == "fitted"
            else f"the defaults: fewer than {fusion.MIN_ANNOTATED} annotated tasks to fit on",
        }
    return out


def fit_decision(
    predict: Predict,
    engine: Engine,
    schema: ProjectSchema,
    template: str,
    examples: dict[str, Any] | None,
    tasks: list[AnnotatedTask],
) -> dict[str, Any]:
    """The decision record of a candidate (``template`` with the pool ``examples``), fitted on ``tasks``."""
    prompt = Prompt(template, examples)
    as_tasks = [t.as_task() for t in tasks]
    contexts = prepare(engine, schema, as_tasks, prompt, LeaveOut(own=True))
    return decision_record(schema, tasks, predict(schema, as_tasks, prompt, contexts))
