"""The span half of the one decision path (``service.predictor``): demonstrations and the model's spans.

A pool entry of a version's ``examples`` may carry ``"spans": {control: [[label, text], ...]}`` (text order):
a corrected task's spans. A Labels control's query gets the ``k`` nearest such entries (MiniLM, like the
Choices demonstrations) rendered as ``Text:\\n<text>\\n<Control>:\\n<label>: <span>...``, then the model
writes the task's own lines under the span constraint (``constraints.spans``). The same entries teach the
phrase tagger (``service.span_phrases``), whose spans come first; the model's confident ones fill the rest.
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
from service.span_fusion import fuse
from service.span_phrases import PhraseTagger, locate

FUSED_MIN_SCORE = 0.5  # the model's spans below this probability are dropped when the corrections tag any
Evidence = list[tuple[int, int, str, float]]  # the corrections' phrases in one task: (start, end, label, share)


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


def phrase_evidence(
    examples: dict[str, Any] | None,
    schema: ProjectSchema,
    control: SpanControl,
    datas: list[dict[str, Any]],
    exclude: set[int],
    own: list[int | None] | None,
) -> list[Evidence] | None:
    """Each task's phrases tagged by the pool's corrections (``service.span_phrases``; never from its own
    entry); None without any. Text objects only: a HyperText's spans are the model's."""
    pool = span_pool(examples, control, exclude)
    obj = schema.object_for(control.to_name)
    if not pool or obj.tag != "text":
        return None
    entries = [(e.get("task_id"), e["text"], locate(e["text"], e["spans"][control.name])) for e in pool]
    shared = PhraseTagger.learn((text, found) for _, text, found in entries)
    ids = {task_id for task_id, _, _ in entries}
    out = []
    for i, data in enumerate(datas):
        mine = own[i] if own is not None else None
        tagger = shared
        if mine is not None and mine in ids:
            tagger = PhraseTagger.learn((text, found) for task_id, text, found in entries if task_id != mine)
        out.append(tagger.tag("" if data.get(obj.value_key) is None else str(data.get(obj.value_key))))
    return out


def decide_spans(
    engine: Engine,
    schema: ProjectSchema,
    control: SpanControl,
    template: str,
    datas: list[dict[str, Any]],
    shots: list[str],
    evidence: list[Evidence | None] | None = None,
) -> list[SpanOutcome]:
    """Each task's spans under ``template``: exact substrings, labels from the control's set; fused with the
    task's phrase ``evidence`` from the corrections when it has any (None: the model alone)."""
    if not hasattr(engine, "tag_spans"):
        raise BadInput(f"the {engine.name} engine does not tag spans (Labels '{control.name}'); use the local engine")
    obj = schema.object_for(control.to_name)
    texts = [spans.task_text(engine, obj, d.get(obj.value_key)) for d in datas]
    queries = [build_query(template, schema, d, control, examples=e) for d, e in zip(datas, shots, strict=True)]
    answers = engine.tag_spans(queries, [t.source for t in texts], control.label_set)
    out = []
    for i, (text, answer) in enumerate(zip(texts, answers, strict=True)):
        regions, keys = spans.regions(control, text, answer)
        found = evidence[i] if evidence else None
        if found is not None:
            regions, keys = fused_regions(control, datas[i].get(obj.value_key), regions, found)
        out.append(SpanOutcome(regions, keys, answer.score))
    return out


def fused_regions(
    control: SpanControl, value: Any, regions: list[dict], found: Evidence
) -> tuple[list[dict], list[str]]:
    """The corrections' phrases, then the model's regions of at least ``FUSED_MIN_SCORE`` in their silences."""
    kept = [r for r in regions if r["score"] >= FUSED_MIN_SCORE]
    model = [(r["value"]["start"], r["value"]["end"], r["value"][control.kind][0]) for r in kept]
    text = "" if value is None else str(value)
    share = {(a, b, label): p for a, b, label, p in found}
    chosen = fuse([f[:3] for f in found], model)
    out = []
    for n, (a, b, label) in enumerate(chosen):
        if (a, b, label) in share:
            region = spans.text_region(control, n, a, b, text[a:b], label, share[(a, b, label)])
            region["meta"] = {"text": ["from corrections"]}
        else:
            region = next(r for r in kept if (r["value"]["start"], r["value"]["end"]) == (a, b))
        out.append({**region, "id": f"{control.name}-{n}"})
    return out, [spans.span_key(a, b, label) for a, b, label in chosen]
