"""Spans between Label Studio and the span constraint: task text -> segments, decoded spans -> regions.

Offsets (what Label Studio 1.23 stores, as its own editor tests pin them):

- ``Text``: ``start``/``end`` index the task's raw value in Unicode code points (Python ``str`` indices, so an
  emoji counts 1); HTML entities in a Text value are literal characters (``&amp;`` is 5).
- ``HyperText``: ``start``/``end`` are XPaths of the text node (relative to the value's root), ``startOffset`` /
  ``endOffset`` count UTF-16 code units inside that node (what the browser's DOM ranges count, an emoji 2),
  ``globalOffsets`` count code points over all the document's text nodes (its ``textContent``). Entities
  are decoded, as in the DOM; a span stays inside one text node.

Spans never cross a line break (a newline ends a ``label: span`` line).
A span is kept as the string ``"<start>:<end>:<label>"`` in predictions' and corrections' ``labels`` (global
code-point offsets), so the store needs no new column and set equality is exact agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from constraints.spans import SpanAnswer, SpanSource
from service.budget import CUT_MARK
from service.labeling import DataObject, SpanControl

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
SKIP = {"script", "style"}


@dataclass(frozen=True)
class TextNode:
    text: str
    xpath: str  # "" for a Text value
    base: int  # code-point offset of the node in the whole text (global offsets)


@dataclass(frozen=True)
class TaskText:
    """A task's text as spans are tagged in it: nodes, the constraint's segments and where each one sits."""

    nodes: tuple[TextNode, ...]
    source: SpanSource
    where: tuple[tuple[int, int], ...]  # per segment: (node index, offset of the segment in the node)


@dataclass
class _Element:
    path: str
    tag: str
    counts: dict[str, int]  # children per tag name, for their XPath indices
    texts: int = 0  # text nodes so far


class _TextNodes(HTMLParser):
    """Text nodes of an HTML fragment with their XPaths (``/article[1]/p[1]/text()[1]``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack = [_Element("", "", {})]
        self.nodes: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        parent = self.stack[-1]
        parent.counts[tag] = parent.counts.get(tag, 0) + 1
        if tag not in VOID:
            self.stack.append(_Element(f"{parent.path}/{tag}[{parent.counts[tag]}]", tag, {}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):  # closes unclosed children too
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        here = self.stack[-1]
        here.texts += 1
        if not any(e.tag in SKIP for e in self.stack):
            self.nodes.append((data, f"{here.path}/text()[{here.texts}]"))


def text_nodes(obj: DataObject, value: Any) -> tuple[TextNode, ...]:
    """The text a span control tags: a Text value whole, a HyperText value's text nodes (script and style
    left out)."""
    raw = "" if value is None else str(value)
    if obj.tag != "hypertext":
        return (TextNode(raw, "", 0),)
    parser = _TextNodes()
    parser.feed(raw)
    parser.close()
    nodes, base = [], 0
    for text, xpath in parser.nodes:
        nodes.append(TextNode(text, xpath, base))
        base += len(text)
    return tuple(nodes)


def task_text(engine: Any, obj: DataObject, value: Any) -> TaskText:
    """Nodes split at line breaks into the constraint's segments (tokenized by ``engine.span_segment``).

    A text the token budget cut (``service.budget``: head, mark, tail) is tagged in its head only, where the
    offsets are the original text's."""
    nodes = text_nodes(obj, value)
    segments, where = [], []
    for n, node in enumerate(nodes):
        at = 0
        for line in node.text.split(CUT_MARK)[0].split("\n"):
            if line.strip():
                segments.append(engine.span_segment(line))
                where.append((n, at))
            at += len(line) + 1
    return TaskText(nodes, SpanSource(tuple(segments)), tuple(where))


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def regions(control: SpanControl, task: TaskText, answer: SpanAnswer) -> tuple[list[dict], list[str]]:
    """Label Studio regions of the answer's spans (one per span, its probability as ``score``) and their
    ``start:end:label`` keys."""
    out, keys = [], []
    for i, span in enumerate(answer.spans):
        n, at = task.where[span.segment]
        node = task.nodes[n]
        start, end = at + span.start, at + span.end
        value: dict[str, Any]
        if node.xpath:
            value = {
                "start": node.xpath,
                "end": node.xpath,
                "startOffset": utf16(node.text[:start]),
                "endOffset": utf16(node.text[:end]),
                "globalOffsets": {"start": node.base + start, "end": node.base + end},
            }
        else:
            value = {"start": start, "end": end}
        value["text"] = span.text
        value[control.kind] = [span.label]
        out.append(
            {
                "id": f"{control.name}-{i}",
                "from_name": control.name,
                "to_name": control.to_name,
                "type": control.kind,
                "value": value,
                "score": round(span.score, 6),
            }
        )
        keys.append(span_key(node.base + start, node.base + end, span.label))
    return out, keys


def text_region(control: SpanControl, i: int, start: int, end: int, text: str, label: str, score: float) -> dict:
    """A Text object's region for one span (offsets in code points of the raw value)."""
    return {
        "id": f"{control.name}-{i}",
        "from_name": control.name,
        "to_name": control.to_name,
        "type": control.kind,
        "value": {"start": start, "end": end, "text": text, control.kind: [label]},
        "score": round(score, 6),
    }


def span_key(start: int, end: int, label: str) -> str:
    return f"{start}:{end}:{label}"


def parse_key(key: str) -> tuple[int, int, str]:
    start, end, label = key.split(":", 2)
    return int(start), int(end), label


def gold_keys(control: SpanControl, result: list[dict[str, Any]]) -> list[str]:
    """An annotation's spans for ``control`` as keys (Text offsets, or HyperText global offsets)."""
    keys = []
    for region in result or []:
        if region.get("from_name") != control.name or not isinstance(region.get("value"), dict):
            continue
        value = region["value"]
        offsets = value.get("globalOffsets") if isinstance(value.get("globalOffsets"), dict) else value
        try:
            start, end = int(offsets["start"]), int(offsets["end"])
        except (KeyError, TypeError, ValueError):
            continue
        for label in value.get(control.kind) or value.get("labels") or []:
            keys.append(span_key(start, end, str(label)))
    return sorted(set(keys), key=parse_key)


def answer_text(control: SpanControl, spans: list[tuple[str, str]]) -> str:
    """A demonstration's answer: ``label: text`` lines in text order, or ``none``."""
    if not spans:
        return "none"
    return "\n".join(f"{control.label_set.name_of(label)}: {text}" for label, text in spans)
