"""The span constraint on a real (tiny) model: whatever the model writes, spans are exact, word-bounded,
non-overlapping substrings of the task text with labels from the set, and offsets are Label Studio's."""

from __future__ import annotations

import pytest

from constraints.labelset import LabelSet, LabelSetError
from constraints.spans import LabelTrie, SpanSource, candidates, char_span, inside_word, lines_possible
from service.labeling import DataObject, SpanControl
from service.spans import gold_keys, parse_key, regions, task_text, text_nodes, utf16

TEXT = DataObject("text", "text", "text")
HYPER = DataObject("page", "hypertext", "html")
LABELS = LabelSet(("City", "Person", "Org"), multiple=True, allow_empty=True)
CONTROL = SpanControl("ner", "text", LABELS, "labels")
HYPER_CONTROL = SpanControl("ner", "page", LABELS, "labels")

TEXTS = [
    "Alice flew from Paris to Berlin on Monday.",
    "🐱 Warning: Zoë met Renée at Café Ünïcode in Zürich 🎉 today",
    "AT&amp;T and &lt;Acme&gt; opened in New York",
    "  leading spaces, then\na second line with Bob\r\nand a third",
    "2 adults and 2 kids, 20th of April",
]


def _source(engine, obj, value) -> tuple[SpanSource, object]:
    tt = task_text(engine, obj, value)
    return tt.source, tt


@pytest.mark.parametrize("text", TEXTS)
def test_candidates_are_word_bounded_runs_inside_one_line(tiny_engine, text: str) -> None:
    source, tt = _source(tiny_engine, TEXT, text)
    flat = source.positions
    found = candidates(source, 0, 6)
    assert found
    for c in found:
        (s1, t1), (s2, t2) = flat[c.first], flat[c.stop - 1]
        assert s1 == s2  # never across a line break
        seg = source.segments[s1]
        a, b = char_span(seg, t1, t2)
        assert seg.text[a:b].strip() == seg.text[a:b] and any(ch.isalnum() for ch in seg.text[a:b])
        assert not inside_word(seg.text, a) and not inside_word(seg.text, b)
        assert "\n" not in seg.text[a:b]
    floor = found[len(found) // 2].first
    assert candidates(source, floor, 6) == [c for c in found if c.first >= floor]


def test_no_span_is_possible_in_punctuation(tiny_engine) -> None:
    source, _ = _source(tiny_engine, TEXT, "?! ... --")
    assert not lines_possible(source, 0, 12)
    answer = tiny_engine.tag_spans([_query()], [source], LABELS)[0]
    assert answer.spans == () and answer.score == 1.0


def test_two_labels_with_the_same_tokens_are_refused() -> None:
    with pytest.raises(ValueError):
        LabelTrie.build([[1, 2], [1, 2]], None)
    with pytest.raises(ValueError, match="begins another label"):
        LabelTrie.build([[1, 2], [1, 2, 3]], None)
    assert set(LabelTrie.build([[1, 2], [1, 3]], [4, 5]).ends.values()) == {0, 1, -1}
    with pytest.raises(LabelSetError):
        LabelSet(("City", "City"))


def _query():
    from constraints.base import Query

    return Query("Tag the entities.\n\n", "Text:\nsomething\n", "Ner:")


@pytest.mark.parametrize("text", TEXTS)
def test_decoded_spans_are_exact_substrings_with_code_point_offsets(tiny_engine, text: str) -> None:
    source, tt = _source(tiny_engine, TEXT, text)
    answer = tiny_engine.tag_spans([_query()], [source], LABELS)[0]
    assert 0 < answer.score <= 1
    out, keys = regions(CONTROL, tt, answer)
    assert len(out) == len(answer.spans) == len(set(keys))
    previous_end = 0
    for region in out:
        v = region["value"]
        assert region["type"] == "labels" and region["from_name"] == "ner" and region["to_name"] == "text"
        assert text[v["start"] : v["end"]] == v["text"]  # Python indices = code points = Label Studio's Text offsets
        assert v["labels"][0] in LABELS.labels and len(v["labels"]) == 1
        assert v["start"] >= previous_end  # text order, no overlap, so no duplicate
        previous_end = v["end"]
        assert 0 < region["score"] <= 1
    assert gold_keys(CONTROL, out) == sorted(set(keys), key=parse_key)


def test_emoji_and_entities_offsets_by_hand(tiny_engine) -> None:
    """Label Studio 1.23's editor tests: Text offsets in code points; "🐱 Warning: This is a test text" puts
    "test" at 21..25. HTML entities in a Text value are literal."""
    text = "🐱 Warning: This is a test text"
    source, tt = _source(tiny_engine, TEXT, text)
    flat = source.positions
    hit = next(
        c
        for c in candidates(source, 0, 3)
        if char_span(source.segments[0], flat[c.first][1], flat[c.stop - 1][1]) == (21, 25)
    )
    assert text[21:25] == "test" and hit is not None
    literal = "AT&amp;T"
    source, _ = _source(tiny_engine, TEXT, literal)
    seg = source.segments[0]
    spans = {
        char_span(seg, flat_t, last)
        for flat_t in range(len(seg.token_ids))
        for last in range(flat_t, len(seg.token_ids))
    }
    assert (0, 8) in spans  # the whole literal, entity included, is one span of 8 characters


def test_hypertext_nodes_match_label_studio_offsets() -> None:
    """The example of Label Studio's editor tests (emoji.cy.ts): "test" in the <p> has global offsets 23..27
    (code points over every text node, the blank one between </h2> and <p> too) and node offsets 13..17 (UTF-16
    units); across both nodes "Warning:...test" is 2..27."""
    html = "<article><h2>🐱 Warning:</h2> <p>🐱 This is a test text</p></article>"
    nodes = text_nodes(HYPER, html)
    assert [(n.xpath, n.base) for n in nodes] == [
        ("/article[1]/h2[1]/text()[1]", 0),
        ("/article[1]/text()[1]", 10),
        ("/article[1]/p[1]/text()[1]", 11),
    ]
    node = nodes[2]
    at = node.text.index("test")
    assert node.base + at == 23 and utf16(node.text[:at]) == 13 and utf16(node.text[: at + 4]) == 17
    assert nodes[0].text.index("Warning") == 2 and node.base + at + 4 == 27
    decoded = text_nodes(HYPER, "<p>AT&amp;T &lt;b&gt;</p><p>x<br>y</p>")
    assert [(n.text, n.xpath, n.base) for n in decoded] == [
        ("AT&T <b>", "/p[1]/text()[1]", 0),
        ("x", "/p[2]/text()[1]", 8),
        ("y", "/p[2]/text()[2]", 9),
    ]


def test_hypertext_regions_point_into_their_text_node(tiny_engine) -> None:
    html = "<div><h1>Trip 🎉</h1><p>Alice &amp; Bob fly to <b>Paris</b> from Zoë's café</p></div>"
    source, tt = _source(tiny_engine, HYPER, html)
    answer = tiny_engine.tag_spans([_query()], [source], LABELS)[0]
    out, keys = regions(HYPER_CONTROL, tt, answer)
    whole = "".join(n.text for n in tt.nodes)
    by_path = {n.xpath: n.text for n in tt.nodes}
    for region in out:
        v = region["value"]
        node = by_path[v["start"]]
        assert v["start"] == v["end"]
        as_utf16 = node.encode("utf-16-le")
        assert as_utf16[2 * v["startOffset"] : 2 * v["endOffset"]].decode("utf-16-le") == v["text"]
        assert whole[v["globalOffsets"]["start"] : v["globalOffsets"]["end"]] == v["text"]
    assert len(set(keys)) == len(keys)


def test_a_cut_text_is_tagged_in_its_head_only(tiny_engine) -> None:
    from service.budget import CUT_MARK

    head = "Alice flew from Paris"
    _, tt = _source(tiny_engine, TEXT, head + CUT_MARK + "to Berlin on Monday")
    assert [s.text for s in tt.source.segments] == [head]
