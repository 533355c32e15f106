"""Span tagging as a constraint: ``label: span`` lines whose spans are token runs of the task's own text.

The decoder (``constraints.span_decoding``) writes, after the cue, one line per span and then stops:

    <lead>date_from: tomorrow\\n time_from: 25 to 7 p.m.\\n\\n        (two spans)
    <lead>none\\n\\n                                                    (no span)

Each line's label is a path in a token trie over ``<name>:`` (only the control's labels), and its span is a
contiguous run of the tokens of one segment of the task text (a Text value, or one text node of a HyperText),
tokenized once with a leading space so a span reads ``label: words`` as in the demonstrations. Spans come in
text order and never overlap (each starts at or after the previous one's end), so no span is emitted twice
and a repeated substring maps to the occurrence after the previous span: offsets come from the token
positions the constraint allowed, never from searching the text afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from constraints.trie import TokenTrie

STOP_WORD = "none"  # the first line of an answer without spans


@dataclass(frozen=True)
class Segment:
    """One stretch of task text a span may lie in, with its tokens' character ranges (code points)."""

    text: str
    token_ids: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]  # per token: [start, end) in ``text``
    starts: tuple[bool, ...] = ()  # per token: a span may start here (a word starts: not inside a word)
    ends: tuple[bool, ...] = ()  # per token: a span may end after it (a word ends)


@dataclass(frozen=True)
class SpanSource:
    """The task text as the constraint sees it: segments, and for each a base offset in the whole text."""

    segments: tuple[Segment, ...]
    bases: tuple[int, ...] = ()

    @property
    def positions(self) -> list[tuple[int, int]]:
        """(segment, token) for every token, in text order: the decoder's flat positions."""
        return [(s, t) for s, seg in enumerate(self.segments) for t in range(len(seg.token_ids))]


@dataclass(frozen=True)
class Span:
    """One tagged span: its segment, character offsets within it (code points), text, label and probability."""

    segment: int
    start: int
    end: int
    text: str
    label: str
    score: float


@dataclass(frozen=True)
class SpanAnswer:
    spans: tuple[Span, ...]
    score: float  # probability of the whole answer (every span, and where it stopped) under the constraint
    steps: int = 0  # model calls the decoder made (speed accounting)


def inside_word(text: str, at: int) -> bool:
    """True when ``at`` splits a word (letters or digits on both sides)."""
    return 0 < at < len(text) and text[at - 1].isalnum() and text[at].isalnum()


def segment(tokenizer, text: str) -> Segment:
    """Tokenize ``" " + text`` (so a first word reads like any other after ``label:``), offsets mapped back.

    Spans start and end only at word boundaries: a token run splitting a word ("Lat|ers") is not a span.
    """
    enc = tokenizer(" " + text, add_special_tokens=False, return_offsets_mapping=True)
    ids, ranges, starts, ends = [], [], [], []
    for tok, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        a, b = max(a - 1, 0), max(b - 1, 0)
        first = a
        while first < b and text[first].isspace():
            first += 1
        ids.append(int(tok))
        ranges.append((a, b))
        starts.append(first < b and not inside_word(text, first))
        ends.append(b > first and not inside_word(text, b))
    return Segment(text, tuple(ids), tuple(ranges), tuple(starts), tuple(ends))


def char_span(seg: Segment, first: int, last: int) -> tuple[int, int] | None:
    """[start, end) characters of tokens ``first..last`` in ``seg``, whitespace trimmed; None if only space."""
    start, end = seg.ranges[first][0], seg.ranges[last][1]
    text = seg.text
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


@dataclass
class LabelTrie:
    """Token paths of ``<name>:`` for each label (plus ``none`` + end on a first line): what a line may start with."""

    trie: TokenTrie
    ends: dict[int, int] = field(default_factory=dict)  # end node -> label index (-1: the stop word)

    @classmethod
    def build(cls, names: list[list[int]], stop: list[int] | None) -> LabelTrie:
        trie = TokenTrie()
        ends: dict[int, int] = {}
        for j, seq in enumerate(names):
            ends[trie.insert(seq)] = j
        if stop is not None:
            ends[trie.insert(stop)] = -1
        if len(ends) != len(names) + (stop is not None):
            raise ValueError("two labels have the same token sequence")
        if any(trie.children.get(end) for end in ends):  # "a:" and "a:b:": a line could not end after "a:"
            raise ValueError("a label followed by ':' begins another label")
        return cls(trie, ends)

    def options(self, node: int) -> dict[int, int]:
        """token id -> child node, at ``node`` (ROOT at a line start)."""
        return self.trie.children.get(node, {})


@dataclass(frozen=True)
class Candidate:
    """A possible span: flat token positions [first, stop) of one segment."""

    first: int
    stop: int


def candidates(source: SpanSource, floor: int, max_tokens: int) -> list[Candidate]:
    """Every run of at most ``max_tokens`` tokens inside one segment, starting at or after ``floor``, that starts
    and ends at word boundaries: what a span line may copy, leftmost first."""
    out = []
    flat = source.positions
    for p in range(floor, len(flat)):
        s, t = flat[p]
        seg = source.segments[s]
        if not seg.starts[t]:
            continue
        for length in range(1, max_tokens + 1):
            last = t + length - 1
            if last >= len(seg.token_ids):
                break
            if seg.ends[last] and _has_word(seg, t, last):
                out.append(Candidate(p, p + length))
    return out


def _has_word(seg: Segment, first: int, last: int) -> bool:
    """A span holds a letter or digit: punctuation alone ("!", ".") is never an entity."""
    return any(ch.isalnum() for ch in seg.text[seg.ranges[first][0] : seg.ranges[last][1]])


def tokens_of(source: SpanSource, cand: Candidate) -> list[int]:
    flat = source.positions
    return [source.segments[flat[p][0]].token_ids[flat[p][1]] for p in range(cand.first, cand.stop)]


def lines_possible(source: SpanSource, floor: int, max_tokens: int) -> bool:
    """True while a span can still start at or after ``floor``."""
    return bool(candidates(source, floor, max_tokens))
