"""Fused spans: one source's spans, plus another's where the first tagged nothing that overlaps them.

The span decision (``service.span_decisions``) puts the corrections' phrases first and the model's spans in
their silences; ``prompter simulate`` also scores other orders with it."""

from __future__ import annotations

SpanTuple = tuple[int, int, str]


def fuse(first: list[SpanTuple], second: list[SpanTuple]) -> list[SpanTuple]:
    kept = list(first)
    for s, e, label in second:
        if all(e <= a or s >= b for a, b, _ in kept):
            kept.append((s, e, label))
    return sorted(set(kept))
