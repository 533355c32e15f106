"""Span metrics and the dictionary baseline, by hand."""

from __future__ import annotations

import pytest

from service.span_dictionary import Dictionary
from service.span_fusion import fuse
from service.span_metrics import both, span_scores


def test_exact_and_partial_micro_and_per_label() -> None:
    gold = [[(0, 8, "date"), (12, 20, "time")], [(3, 7, "adults")], []]
    pred = [[(0, 8, "date"), (13, 20, "time")], [(3, 7, "kids")], [(0, 2, "date")]]
    exact = span_scores(gold, pred)
    assert (exact["tp"], exact["predicted"], exact["gold"]) == (1, 4, 3)
    assert exact["precision"] == pytest.approx(0.25) and exact["recall"] == pytest.approx(1 / 3)
    assert exact["f1"] == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))
    partial = span_scores(gold, pred, partial=True)
    assert partial["tp"] == 2  # the shifted time overlaps; a wrong label never counts
    assert partial["per_label"]["time"]["f1"] == 1.0 and exact["per_label"]["time"]["f1"] == 0.0
    assert partial["per_label"]["adults"]["recall"] == 0.0 and partial["per_label"]["kids"]["precision"] == 0.0


def test_one_long_span_over_two_gold_spans_counts_once() -> None:
    scores = both([[(0, 4, "x"), (5, 9, "x")]], [[(0, 9, "x")]])
    assert scores["partial"]["tp"] == 1 and scores["partial"]["recall"] == 0.5
    assert scores["exact"]["tp"] == 0


def test_nothing_predicted_on_nothing_is_perfect_and_an_invented_span_is_not() -> None:
    assert span_scores([[]], [[]])["f1"] == 1.0
    assert span_scores([[]], [[(0, 1, "x")]])["precision"] == 0.0


def test_dictionary_tags_word_bounded_exact_occurrences_longest_first() -> None:
    d = Dictionary([("adults", "2"), ("date", "20th of April"), ("date", "April"), ("kids", "2"), ("adults", "2")])
    text = "2 adults on the 20th of April, 2 more; April 2nd"
    assert d.occurrences(text) == [(0, 1, "adults"), (16, 29, "date"), (31, 32, "adults"), (39, 44, "date")]
    assert d.occurrences("nothing here") == []


def test_fused_keeps_the_model_and_fills_its_silences() -> None:
    model = [(0, 5, "date")]
    dictionary = [(2, 7, "time"), (10, 12, "adults")]
    assert fuse(model, dictionary) == [(0, 5, "date"), (10, 12, "adults")]


def test_the_decision_fills_the_models_silences_with_corrected_phrases(tiny_engine) -> None:
    from service.labeling import labels_config, parse_config
    from service.predictor import LeaveOut, Prompt, label_tasks

    schema = parse_config(labels_config(["date", "adults"], "slots"))
    pool = [
        {"task_id": 1, "text": "on Friday", "labels": {}, "spans": {"slots": [["date", "Friday"]]}},
        {"task_id": 2, "text": "2 adults", "labels": {}, "spans": {"slots": [["adults", "2"]]}},
    ]
    prompt = Prompt("Tag slots.\n\n{examples}Text:\n{text}\n", {"pool": pool, "k": 2})
    text = "2 adults arriving Friday, 2 adults leaving Friday"
    [pred] = label_tasks(tiny_engine, schema, [{"id": 9, "data": {"text": text}}], prompt)
    regions = [r for r in pred.result if r["type"] == "labels"]
    starts = [r["value"]["start"] for r in regions]
    assert starts == sorted(starts)
    for a, b, label in Dictionary([("date", "Friday"), ("adults", "2")]).occurrences(text):
        covering = [r for r in regions if r["value"]["start"] < b and a < r["value"]["end"]]
        assert covering  # every corrected phrase is tagged, by the model or from the corrections
        for r in covering:
            assert text[r["value"]["start"] : r["value"]["end"]] == r["value"]["text"]
            if r.get("meta"):
                assert (r["value"]["start"], r["value"]["end"], r["value"]["labels"]) == (a, b, [label])
                assert r["score"] == 1.0
    assert len(pred.labels["slots"]) == len(regions)
    # leave-one-out: a pool task scored as a new one does not learn from its own correction
    own = {"id": 1, "data": {"text": "on Friday"}}
    [alone] = label_tasks(tiny_engine, schema, [own], prompt, leave_out=LeaveOut(own=True))
    assert not any(r.get("meta") for r in alone.result)
    [seen] = label_tasks(tiny_engine, schema, [own | {"id": 5}], prompt)
    assert any(r.get("meta") for r in seen.result) or any(r["value"]["text"] == "Friday" for r in seen.result)
