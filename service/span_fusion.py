"""Fused spans: the model's spans, plus the dictionary's (``service.span_dictionary``) where the model tagged
nothing that overlaps them. The model decides where it spoke; the corrections' phrases fill its silences."""

from __future__ import annotations

SpanTuple = tuple[int, int, str]


def fuse(model: list[SpanTuple], dictionary: list[SpanTuple]) -> list[SpanTuple]:
    kept = list(model)
    for s, e, label in dictionary:
        if all(e <= a or s >= b for a, b, _ in kept):
            kept.append((s, e, label))
    return sorted(set(kept))
