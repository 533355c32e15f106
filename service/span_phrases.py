"""The corrections' phrases, tagged where the corrections say they would be: a phrase tagger learned by counting.

The dictionary baseline (``service.span_dictionary``) tags every occurrence of every corrected span's text.
Annotators do not: "2" is an adult count after "for", a room count before "rooms", and nothing in "2 nights"
or "20 minutes ago"; "today" is tagged in one correction and left alone in five others. So the tagger counts,
over the corrected texts, every occurrence of every known phrase, tagged or not, and tags a new occurrence only
when the occurrences like it (the same phrase with the same next word, or previous word, or the phrase alone)
were mostly tagged, with their most frequent label.

Phrases are matched as token sequences, case-insensitive, with every run of digits read as one digit shape
(``5 nights`` and ``12 nights`` are one phrase, ``10th`` and ``23rd`` are not), so counts pool across numbers.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

SpanTuple = tuple[int, int, str]
TOKEN = re.compile(r"\w+|[^\w\s]")
NONE = ""  # the class of an occurrence the annotator left untagged
MAX_TOKENS = 8  # longer corrected spans are too rare to recur
MIN_SHARE = 0.5  # tag when at least this share of the weighted occurrences carried the label


def tokens(text: str) -> list[tuple[int, int, str]]:
    """Words and punctuation with their offsets, as matching keys: lower case, digit runs as ``0``."""
    return [(m.start(), m.end(), re.sub(r"\d+", "0", m.group().lower())) for m in TOKEN.finditer(text)]


def locate(text: str, spans: Iterable[tuple[str, str]]) -> list[SpanTuple]:
    """Offsets of a correction's ``(label, span text)`` pairs (text order, as the pool stores them)."""
    out, at = [], 0
    for label, phrase in spans:
        start = text.find(phrase, at)
        if start < 0:
            start = text.find(phrase)
        if start < 0 or not phrase.strip():
            continue
        out.append((start, start + len(phrase), label))
        at = start + 1
    return out


@dataclass(frozen=True)
class Occurrence:
    start: int
    end: int
    key: tuple[str, ...]
    left: str  # the previous token's key, "^" at the start
    right: str  # the next token's key, "$" at the end


def occurrences(text: str, keys: set[tuple[str, ...]], longest: int) -> list[Occurrence]:
    """Every non-overlapping occurrence of a known phrase key, longest first, then leftmost; in text order."""
    toks = tokens(text)
    words = [t[2] for t in toks]
    taken: list[Occurrence] = []
    used = [False] * len(toks)
    for n in range(min(longest, len(toks)), 0, -1):
        for i in range(len(toks) - n + 1):
            key = tuple(words[i : i + n])
            if key in keys and not any(used[i : i + n]):
                used[i : i + n] = [True] * n
                left = words[i - 1] if i else "^"
                right = words[i + n] if i + n < len(words) else "$"
                taken.append(Occurrence(toks[i][0], toks[i + n - 1][1], key, left, right))
    return sorted(taken, key=lambda o: o.start)


@dataclass
class PhraseTagger:
    """Counts of how the corrections treated each occurrence of each known phrase (``learn``)."""

    keys: set[tuple[str, ...]] = field(default_factory=set)
    alone: dict[tuple, Counter] = field(default_factory=lambda: defaultdict(Counter))
    after: dict[tuple, Counter] = field(default_factory=lambda: defaultdict(Counter))  # (key, next token)
    before: dict[tuple, Counter] = field(default_factory=lambda: defaultdict(Counter))  # (previous token, key)
    longest: int = 0

    @classmethod
    def learn(cls, corrections: Iterable[tuple[str, list[SpanTuple]]]) -> PhraseTagger:
        """From ``(text, spans)`` of the corrected tasks (offsets in the text)."""
        corrections = list(corrections)
        tagger = cls()
        for text, spans in corrections:
            for start, end, _ in spans:
                key = tuple(t[2] for t in tokens(text[start:end]))
                if 0 < len(key) <= MAX_TOKENS:
                    tagger.keys.add(key)
        tagger.longest = max((len(k) for k in tagger.keys), default=0)
        for text, spans in corrections:
            tagger.count(text, spans, +1)
        return tagger

    def count(self, text: str, spans: list[SpanTuple], sign: int) -> None:
        """Add (``sign`` +1) or take back (-1) one corrected text's occurrences."""
        gold = {(a, b): label for a, b, label in spans}
        for o in occurrences(text, self.keys, self.longest):
            label = gold.get((o.start, o.end), NONE)
            self.alone[o.key][label] += sign
            self.after[(o.key, o.right)][label] += sign
            self.before[(o.left, o.key)][label] += sign

    def votes(self, o: Occurrence) -> Counter:
        """The classes of the occurrences like ``o``: those of its phrase with the same next or previous token
        when the corrections hold any, else all of its phrase's."""
        near = Counter()
        for counts in (self.after.get((o.key, o.right)), self.before.get((o.left, o.key))):
            near.update(counts or Counter())
        near = +near  # drops classes counted back to zero
        return near if near else +Counter(self.alone.get(o.key, Counter()))

    def tag(self, text: str, min_share: float = MIN_SHARE) -> list[tuple[int, int, str, float]]:
        """``(start, end, label, share)`` of every occurrence whose like occurrences were mostly tagged."""
        out = []
        for o in occurrences(text, self.keys, self.longest):
            votes = self.votes(o)
            labels = [(n, label) for label, n in votes.items() if label != NONE]
            if not labels:
                continue
            n, label = max(labels)
            total = sum(votes.values())
            if n / total >= min_share:
                out.append((o.start, o.end, label, n / total))
        return out
