"""The span half of the one decision path (``service.predictor``): demonstrations and the model's spans.

A pool entry of a version's ``examples`` may carry ``"spans": {control: [[label, text], ...]}`` (text order):
a corrected task's spans. A Labels control's query gets the ``k`` nearest such entries (MiniLM, like the
Choices demonstrations) rendered as ``Text:\\n<text>\\n<Control>:\\n<label>: <span>...``, then the model
writes the task's own lines under the span constraint (``constraints.spans``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from constraints.base import Engine
from constraints.errors import BadInput
from service import spans
from service.demonstrations import retrieve, title
from service.labeling import ProjectSchema, SpanControl
from service.prompting import build_query, task_text


@dataclass
class SpanOutcome:
    """One task's spans for one control: regions, their keys and the answer's probability."""

    regions: list[dict]
    keys: list[str]
    score: float


def span_pool(examples: dict[str, Any] | None, control: SpanControl, exclude: set[int]) -> list[dict[str, Any]]:
    pool = (examples or {}).get("pool") or []
    return [e for e in pool if control.name in (e.get("spans") or {}) and e.get("task_id") not in exclude]


def render(entry: dict[str, Any], schema: ProjectSchema, control: SpanControl, lead: str) -> str:
    obj = schema.object_for(control.to_name)
    answer = spans.answer_text(control, [tuple(x) for x in entry["spans"][control.name]])
    return f"{title(obj.name)}:\n{entry['text']}\n{title(control.name)}:{lead}{answer}\n\n"


def span_shots(
    examples: dict[str, Any] | None,
    schema: ProjectSchema,
    control: SpanControl,
    datas: list[dict[str, Any]],
    lead: str,
    exclude: set[int],
    own: list[int | None] | None,
) -> list[str]:
    """The ``{examples}`` text of each task for ``control``: its nearest corrected tasks, most similar last."""
    pool = span_pool(examples, control, exclude)
    if not pool:
        return ["" for _ in datas]
    texts = [task_text(schema, d, control.to_name) for d in datas]
    chosen = retrieve(pool, texts, int((examples or {}).get("k", 8)), set(), own)
    return ["".join(render(pool[i], schema, control, lead) for i in idx) for idx in chosen]


def decide_spans(
    engine: Engine,
    schema: ProjectSchema,
    control: SpanControl,
    template: str,
    datas: list[dict[str, Any]],
    shots: list[str],
) -> list[SpanOutcome]:
    """The model's spans for each task under ``template``: exact substrings, labels from the control's set."""
    if not hasattr(engine, "tag_spans"):
        raise BadInput(f"the {engine.name} engine does not tag spans (Labels '{control.name}'); use the local engine")
    obj = schema.object_for(control.to_name)
    texts = [spans.task_text(engine, obj, d.get(obj.value_key)) for d in datas]
    queries = [build_query(template, schema, d, control, examples=e) for d, e in zip(datas, shots, strict=True)]
    answers = engine.tag_spans(queries, [t.source for t in texts], control.label_set)
    out = []
    for text, answer in zip(texts, answers, strict=True):
        regions, keys = spans.regions(control, text, answer)
        out.append(SpanOutcome(regions, keys, answer.score))
    return out
