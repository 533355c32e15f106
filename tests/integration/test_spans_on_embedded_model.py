"""Spans on the embedded model (Gemma 3 270M): corrected tasks as demonstrations, exact substrings, no
invented span on a text without entities, Label Studio offsets through the real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.simulate_spans import CONTROL, pool, sample_spans
from constraints.base import Query
from service.demonstrations import compose
from service.labeling import DataObject, SpanControl, labels_config, parse_config
from service.predictor import Prompt, label_tasks
from service.prompting import default_prompt
from service.spans import regions, task_text
from tests.integration.conftest import SHARED

pytestmark = pytest.mark.model

SLOTS = SHARED / "nlupp-hotels" / "slots.jsonl"


@pytest.fixture(scope="module")
def slots_prompt():
    train, heldout = sample_spans(Path(SLOTS), 200, 100, 0)
    labels = sorted({x for r in train + heldout for *_, x in r.spans})
    schema = parse_config(labels_config(labels, CONTROL, choices=["booking", "other"]))
    return schema, Prompt(compose(default_prompt(schema), schema, retrieval=True), {"pool": pool(train), "k": 8})


def test_spans_with_demonstrations_are_exact_and_empty_where_there_is_nothing(embedded_engine, slots_prompt) -> None:
    schema, prompt = slots_prompt
    texts = [
        "arrive on Thursday",
        "how can i change it?",
        "yeah I have one",
        "I want to book for 2 adults 🐱 on Friday",
    ]
    tasks = [{"id": i + 1, "data": {"text": t}} for i, t in enumerate(texts)]
    preds = label_tasks(embedded_engine, schema, tasks, prompt)
    spans = [[r for r in p.result if r["type"] == "labels"] for p in preds]
    for text, found, pred in zip(texts, spans, preds, strict=True):
        assert len([r for r in pred.result if r["type"] == "choices"]) == 1  # the Choices control, decided too
        for region in found:
            v = region["value"]
            assert text[v["start"] : v["end"]] == v["text"] and v["labels"][0] in schema.spans[0].label_set.labels
    assert [(r["value"]["text"], r["value"]["labels"]) for r in spans[0]] == [("Thursday", ["date_from"])]
    assert spans[1] == []  # no entity: no invented span
    # "yeah I have one": the model tags nothing; the fused decision adds "one", a corrected phrase (adults)
    assert [r for r in spans[2] if not r.get("meta")] == []
    phrases = {text for e in prompt.examples["pool"] for _, text in e["spans"][CONTROL]}
    assert all(r["value"]["text"] in phrases and r["meta"] == {"text": ["from corrections"]} for r in spans[2])
    assert all(0 < p.score <= 1 for p in preds)


def test_hypertext_offsets_through_the_real_tokenizer(embedded_engine) -> None:
    obj = DataObject("page", "hypertext", "html")
    control = SpanControl("slots", "page", parse_config(labels_config(["date"], "slots")).spans[0].label_set, "labels")
    html = "<div><p>🐱 Caf&eacute; &amp; bar</p><p>arrive on Thursday 20th of April</p></div>"
    tt = task_text(embedded_engine, obj, html)
    query = Query("Tag dates.\n\n", "Text:\narrive on Thursday 20th of April\n", "Slots:")
    answer = embedded_engine.tag_spans([query], [tt.source], control.label_set)[0]
    out, _ = regions(control, tt, answer)
    whole = "".join(n.text for n in tt.nodes)
    for region in out:
        v = region["value"]
        node = next(n.text for n in tt.nodes if n.xpath == v["start"])
        assert node.encode("utf-16-le")[2 * v["startOffset"] : 2 * v["endOffset"]].decode("utf-16-le") == v["text"]
        assert whole[v["globalOffsets"]["start"] : v["globalOffsets"]["end"]] == v["text"]
    assert [s.text for s in tt.source.segments] == ["🐱 Café & bar", "arrive on Thursday 20th of April"]
