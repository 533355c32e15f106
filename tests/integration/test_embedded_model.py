"""The embedded model (Gemma 3 270M) for real: labels stay in the set, scores are probabilities."""

from __future__ import annotations

import pytest

from constraints.base import Query
from constraints.labelset import LabelSet
from constraints.reference import OutlinesLabeler
from service.labeling import parse_config
from service.predictor import Prompt, label_tasks
from service.prompting import build_query, default_prompt
from tests.integration.conftest import INSURANCE_INTENTS, chat_config, dstc11_dialogues

pytestmark = pytest.mark.model


def test_prompt_centric_prediction_is_complete(embedded_engine) -> None:
    xml = chat_config(INSURANCE_INTENTS, multiple=True)
    schema = parse_config(xml)
    tasks = [{"id": i, "data": d} for i, d in enumerate(dstc11_dialogues(4))]
    preds = label_tasks(
        embedded_engine, schema, tasks, Prompt("Classify the customer's intents."), response_max_tokens=8
    )
    assert len(preds) == len(tasks)
    for p in preds:
        chosen = p.labels["intent"]
        assert len(chosen) == len(set(chosen)) and set(chosen) <= set(INSURANCE_INTENTS)
        assert 0 < p.score <= 1
        kinds = {(r["from_name"], r["type"]) for r in p.result}
        assert kinds == {("intent", "choices"), ("response", "textarea"), ("prompt", "textarea")}
        response = next(r for r in p.result if r["from_name"] == "response")["value"]["text"][0]
        assert response.strip() and "\n" not in response
        echoed = next(r for r in p.result if r["from_name"] == "prompt")["value"]["text"]
        assert echoed == ["Classify the customer's intents."]


def test_single_choice_has_exactly_one_label_and_a_distribution(embedded_engine) -> None:
    xml = chat_config(INSURANCE_INTENTS, multiple=False)
    schema = parse_config(xml)
    tasks = [{"id": i, "data": d} for i, d in enumerate(dstc11_dialogues(6))]
    preds = label_tasks(embedded_engine, schema, tasks, Prompt(default_prompt(schema)))
    scores = set()
    for p in preds:
        assert len(p.labels["intent"]) == 1 and p.labels["intent"][0] in INSURANCE_INTENTS
        probs = p.probs["intent"]
        assert abs(sum(probs.values()) - 1) < 1e-3
        assert p.score == pytest.approx(max(probs.values()))
        scores.add(round(p.score, 6))
    assert len(scores) > 1  # a real probability, not a constant


def test_trie_scoring_agrees_with_outlines_greedy_on_the_top_label(embedded_engine) -> None:
    labels = LabelSet(tuple(INSURANCE_INTENTS))
    schema = parse_config(chat_config(INSURANCE_INTENTS, multiple=False))
    control = schema.choices[0]
    queries = [build_query(default_prompt(schema), schema, d, control) for d in dstc11_dialogues(8)]
    fast = [d.labels for d in embedded_engine.decide(queries, labels)]
    greedy = OutlinesLabeler(embedded_engine).label(queries, labels)
    agree = sum(a == b for a, b in zip(fast, greedy, strict=True))
    assert agree >= 7, (fast, greedy)


def test_hard_label_sets(embedded_engine) -> None:
    query = Query("Classify the text.\n\n", "Text:\nmy card was stolen 😱\n", "Label:")
    odd = LabelSet(("card", "card stolen", "card stolen abroad", "Карта украдена", "💳 lost", "a/b (c)"))
    (d,) = embedded_engine.decide([query], odd)
    assert d.labels[0] in odd.labels and abs(sum(d.probs.values()) - 1) < 1e-3
    many = LabelSet(tuple(f"label {i}" for i in range(500)))
    (d,) = embedded_engine.decide([query], many)
    assert d.labels[0] in many.labels and len(d.probs) == 500
