"""The phrase tagger learned from corrections, and the span decision that puts it before the model."""

from __future__ import annotations

import pytest

from service import span_decisions
from service.labeling import labels_config, parse_config
from service.span_decisions import fused_regions, phrase_evidence
from service.span_phrases import PhraseTagger, locate, tokens


def test_tokens_are_lower_case_with_digit_runs_as_one_shape() -> None:
    assert [t[2] for t in tokens("Book 12 rooms, 3rd May 10:45")] == [
        "book", "0", "rooms", ",", "0rd", "may", "0", ":", "0",
    ]  # fmt: skip
    assert tokens("A 7")[1][:2] == (2, 3)


def test_locate_finds_a_corrections_spans_in_text_order() -> None:
    text = "2 adults and 2 kids"
    assert locate(text, [("adults", "2"), ("kids", "2")]) == [(0, 1, "adults"), (13, 14, "kids")]
    assert locate(text, [("kids", "dogs")]) == []


def learned(*corrections: tuple[str, list[tuple[str, str]]]) -> PhraseTagger:
    return PhraseTagger.learn((text, locate(text, spans)) for text, spans in corrections)


def test_a_phrase_the_corrections_mostly_left_untagged_is_not_tagged() -> None:
    tagger = learned(
        ("arriving today", [("date_from", "today")]),
        ("today I cancel", []),
        ("is it open today", []),
        ("today works", []),
    )
    assert tagger.tag("leaving today please") == []
    alone = learned(("arriving today", [("date_from", "today")]))
    assert alone.tag("leaving today please") == [(8, 13, "date_from", 1.0)]


def test_the_next_or_previous_token_decides_a_numbers_label() -> None:
    tagger = learned(
        ("2 adults please", [("adults", "2")]),
        ("we need 3 rooms", [("rooms", "3")]),
        ("for 4 rooms", [("rooms", "4")]),
        ("staying 2 nights", [("date_period", "2 nights")]),
    )
    text = "7 adults in 5 rooms for 9 nights"
    assert [s[:3] for s in tagger.tag(text)] == [(0, 1, "adults"), (12, 13, "rooms"), (24, 32, "date_period")]


def test_an_unseen_neighbour_falls_back_to_the_phrases_own_counts() -> None:
    tagger = learned(("2 adults", [("adults", "2")]), ("3 adults", [("adults", "3")]), ("2 kids", [("kids", "2")]))
    [(start, end, label, share)] = tagger.tag("with 5 of us")
    assert (start, end, label) == (5, 6, "adults") and share == pytest.approx(2 / 3)
    assert tagger.tag("with 5 of us", min_share=0.7) == []


def test_counting_back_a_correction_undoes_it() -> None:
    corrections = [("2 adults", [(0, 1, "adults")]), ("2 nights", [])]
    tagger = PhraseTagger.learn(corrections)
    before = tagger.tag("2 adults")
    assert before == [(0, 1, "adults", pytest.approx(2 / 3))]  # the start of "2 nights" was left untagged
    tagger.count(*corrections[0], -1)
    assert tagger.tag("2 adults") == []
    tagger.count(*corrections[0], +1)
    assert tagger.tag("2 adults") == before


SCHEMA = parse_config(labels_config(["adults", "date", "rooms"], "slots"))
CONTROL = SCHEMA.spans[0]


def region(a: int, b: int, text: str, label: str, score: float) -> dict:
    return {
        "id": "x",
        "from_name": "slots",
        "to_name": CONTROL.to_name,
        "type": "labels",
        "value": {"start": a, "end": b, "text": text[a:b], "labels": [label]},
        "score": score,
    }


def test_the_decision_puts_the_corrections_phrases_first_and_the_confident_model_in_their_silences() -> None:
    text = "2 adults on Friday in a room"
    found = [(0, 1, "adults", 0.8)]
    model = [
        region(0, 8, text, "rooms", 0.99),  # overlaps a corrected phrase: the phrase wins
        region(12, 18, text, "date", span_decisions.FUSED_MIN_SCORE),  # confident enough, in a silence
        region(22, 28, text, "rooms", span_decisions.FUSED_MIN_SCORE - 0.01),  # not
    ]
    regions, keys = fused_regions(CONTROL, text, model, found)
    assert keys == ["0:1:adults", "12:18:date"]
    assert [r["id"] for r in regions] == ["slots-0", "slots-1"]
    assert regions[0]["meta"] == {"text": ["from corrections"]} and regions[0]["score"] == 0.8
    assert regions[0]["value"]["text"] == "2" and "meta" not in regions[1]


def test_phrase_evidence_never_learns_a_task_from_its_own_correction() -> None:
    pool = [
        {"task_id": 1, "text": "on Friday", "labels": {}, "spans": {"slots": [["date", "Friday"]]}},
        {"task_id": 2, "text": "2 adults", "labels": {}, "spans": {"slots": [["adults", "2"]]}},
    ]
    datas = [{"text": "on Friday"}, {"text": "on Friday"}]
    [own, other] = phrase_evidence({"pool": pool}, SCHEMA, CONTROL, datas, set(), [1, 7])
    assert own == [] and other == [(3, 9, "date", 1.0)]
    assert phrase_evidence({"pool": pool}, SCHEMA, CONTROL, datas, {1, 2}, None) is None


def test_simulate_scores_the_service_decision_beside_the_tagger_and_the_dictionary(tiny_engine) -> None:
    from agent.simulate_spans import SpanRow, run_spans

    def row(text: str, *spans: tuple[str, str]) -> SpanRow:
        return SpanRow(text, tuple(sorted((text.index(t), text.index(t) + len(t), x) for t, x in spans)))

    train = [
        row("2 adults from Thursday", ("2", "adults"), ("Thursday", "date_from")),
        row("staying 2 nights", ("2 nights", "date_period")),
        row("is 2 too many", ("2", "adults")),
        row("we are 3 adults", ("3", "adults")),
    ]
    heldout = [row("5 adults on Thursday", ("5", "adults"), ("Thursday", "date_from")), row("hello there")]
    summary = run_spans(tiny_engine, train, heldout, [0, 4], latency_tasks=0, log=lambda _: None)
    last = summary["rounds"][-1]
    # the tagger alone: "5" before "adults" (a digit run like "2" and "3"), "Thursday" as corrected
    assert summary["final_phrases_only_span_f1"] == 1.0 == last["phrases_only"]["span_f1"]
    assert last["baselines"]["dictionary_span_f1"] == 0.6667  # "5" was never corrected
    assert summary["final_heldout_span_f1"] == last["heldout_span_f1"] == 1.0  # the phrases win their overlaps
    assert set(last["span_f1_by_min_score"]) == {"0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"}
