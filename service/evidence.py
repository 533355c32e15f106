"""The evidence a fused decision weighs for each (task, label), next to the model's (``service.fusion``):

- label knowledge: the task text's similarity to each label's description (``service.knowledge``);
- corrections: its similarity to the nearest annotated task of each label in the version's pool, and to the
  label's centroid;
- the model: the constrained label log-probabilities under the prompt, batch-calibrated against the same prompt's
  log-probabilities on the labels' own descriptions (a reference that needs no annotated task and is the same
  for every request, so a task gets the same decision alone or in a batch, through ``/predict`` or a file).

The first two are computed before any model work (``task_evidence``), the third once the model answered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from constraints.base import Engine
from service import embeddings, fusion
from service.demonstrations import examples_for
from service.knowledge import descriptions, label_vectors
from service.labeling import ChoiceControl, DataObject, ProjectSchema
from service.prompting import build_query, task_text

MODEL = fusion.FEATURES.index("model")

_lock = threading.Lock()
_references: OrderedDict[tuple, np.ndarray] = OrderedDict()
REFERENCE_CACHE = 64


def pool_entries(examples: dict[str, Any] | None, exclude: set[int]) -> list[dict[str, Any]]:
    """The version's pool (``{"pool": [{"task_id", "text", "labels"}], "k"}``), minus excluded task ids."""
    pool = (examples or {}).get("pool") or []
    return [e for e in pool if e.get("task_id") not in exclude]


def task_evidence(
    schema: ProjectSchema,
    control: ChoiceControl,
    template: str,
    examples: dict[str, Any] | None,
    datas: list[dict[str, Any]],
    own: list[int | None] | None = None,
    exclude: set[int] = frozenset(),
) -> np.ndarray:
    """(tasks, labels, F) knowledge and corrections evidence (the model column left at 0).

    ``own``: each task's id, which its own evidence may not use (leave-one-out over a pool holding it).
    """
    labels = control.label_set.labels
    texts = [task_text(schema, d, control.to_name) for d in datas]
    pool = [e for e in pool_entries(examples, exclude) if control.name in e.get("labels", {})]
    pool_vecs = embeddings.embed([e["text"] for e in pool]) if pool else None
    hot = np.zeros((len(pool), len(labels)))
    index = {x: j for j, x in enumerate(labels)}
    for i, entry in enumerate(pool):
        for x in entry["labels"][control.name]:
            if x in index:
                hot[i, index[x]] = 1.0
    self_index = None
    if own is not None and pool:
        where = {e.get("task_id"): i for i, e in enumerate(pool)}
        self_index = np.array([where.get(t, -1) if t is not None else -1 for t in own], dtype=np.int64)
    return fusion.features(
        embeddings.embed(texts),
        label_vectors(template, schema, control),
        pool_vecs,
        hot if pool else None,
        None,
        self_index,
    )


def pool_similarity(
    schema: ProjectSchema, control: ChoiceControl, examples: dict[str, Any] | None, datas: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The version's pool entries for ``control`` and the (tasks, entries) cosines the corrections evidence
    weighed: what the response names as the nearest annotated task (vectors from the embedder's cache)."""
    pool = [e for e in pool_entries(examples, set()) if control.name in e.get("labels", {})]
    if not pool or not datas:
        return pool, np.zeros((len(datas), len(pool)), dtype=np.float32)
    texts = [task_text(schema, d, control.to_name) for d in datas]
    return pool, embeddings.embed(texts) @ embeddings.embed([e["text"] for e in pool]).T


def _pseudo_task(obj: DataObject, text: str) -> dict[str, Any]:
    if obj.tag == "paragraphs":
        return {obj.value_key: [{obj.name_key: "user", obj.text_key: text}]}
    return {obj.value_key: text}


def model_reference(
    engine: Engine, schema: ProjectSchema, control: ChoiceControl, template: str, examples: dict[str, Any] | None
) -> np.ndarray:
    """(labels, labels) the prompt's label log-probabilities on each label's own description as the task: the
    reference ``fusion.model_feature`` calibrates against. One model call per prompt and control, cached."""
    pool_ids = tuple(e.get("task_id") for e in pool_entries(examples, set()))
    key = (id(engine), template, pool_ids, schema, control.name, control.label_set.key)
    with _lock:
        hit = _references.get(key)
        if hit is not None:
            _references.move_to_end(key)
            return hit
    # every data object reads the description, in the shape its tag expects
    datas = [
        {k: v for o in schema.objects for k, v in _pseudo_task(o, d).items()}
        for d in descriptions(template, schema, control)
    ]
    shots = examples_for(examples, schema, datas, getattr(engine, "lead", " ")) if "{examples}" in template else None
    queries = [
        build_query(template, schema, d, control, examples=shots[i] if shots else "") for i, d in enumerate(datas)
    ]
    reference = np.asarray(engine.label_logprobs(queries, control.label_set), dtype=np.float64)
    with _lock:
        _references[key] = reference
        while len(_references) > REFERENCE_CACHE:
            _references.popitem(last=False)
    return reference


def with_model(
    evidence: np.ndarray, logp: np.ndarray, reference: np.ndarray | None, calibrate: bool = True
) -> np.ndarray:
    """``evidence`` with its model column: the log-probabilities, batch-calibrated against ``reference``."""
    out = np.array(evidence, dtype=np.float64, copy=True)
    out[..., MODEL] = fusion.model_feature(logp, batch_calibrate=calibrate, reference=reference)
    return out
