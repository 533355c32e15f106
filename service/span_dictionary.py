"""The dictionary a user could build from corrections: every span text seen, tagged wherever it occurs again.

Each phrase gets its most frequent label in the corrections. Occurrences are exact (case-sensitive) and at
word boundaries (``2`` is not tagged inside ``20th``); overlapping occurrences keep the longest, then the
leftmost. The baseline of ``prompter simulate``'s span mode.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from constraints.spans import inside_word

SpanTuple = tuple[int, int, str]


class Dictionary:
    def __init__(self, spans: Iterable[tuple[str, str]]) -> None:
        """``spans``: (label, text) of every corrected span."""
        votes: dict[str, Counter] = defaultdict(Counter)
        for label, text in spans:
            if text.strip():
                votes[text][label] += 1
        self.labels = {text: counts.most_common(1)[0][0] for text, counts in votes.items()}
        self.phrases = sorted(self.labels, key=lambda t: (-len(t), t))

    def __len__(self) -> int:
        return len(self.labels)

    def occurrences(self, text: str) -> list[SpanTuple]:
        """Every non-overlapping occurrence of a known phrase, longest first, in text order."""
        taken: list[SpanTuple] = []
        for phrase in self.phrases:
            at = text.find(phrase)
            while at >= 0:
                end = at + len(phrase)
                clear = not inside_word(text, at) and not inside_word(text, end)
                if clear and all(end <= s or at >= e for s, e, _ in taken):
                    taken.append((at, end, self.labels[phrase]))
                at = text.find(phrase, at + 1)
        return sorted(taken)
