"""Span precision, recall and F1, exact and partial, micro and per label (``prompter eval`` and ``simulate``).

A span is ``(start, end, label)``. Exact: a predicted span counts when the gold set holds the very same span.
Partial: a predicted span counts when it overlaps a gold span of the same label; each gold span is matched at
most once, and each predicted span too (greedy, in text order), so ``tp`` is the same count for precision
and recall and a long span covering two gold ones counts once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

SpanTuple = tuple[int, int, str]


def _overlap(a: SpanTuple, b: SpanTuple) -> bool:
    return a[2] == b[2] and a[0] < b[1] and b[0] < a[1]


def matches(gold: Iterable[SpanTuple], pred: Iterable[SpanTuple], partial: bool) -> list[tuple[SpanTuple, bool]]:
    """Each predicted span (text order) with whether it matched a gold span not matched before."""
    free = sorted(set(gold))
    out = []
    for p in sorted(set(pred)):
        hit = next((g for g in free if (_overlap(p, g) if partial else g == p)), None)
        if hit is not None:
            free.remove(hit)
        out.append((p, hit is not None))
    return out


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    precision = tp / n_pred if n_pred else (1.0 if not n_gold else 0.0)
    recall = tp / n_gold if n_gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "predicted": n_pred, "gold": n_gold}


def span_scores(
    gold: Sequence[Iterable[SpanTuple]], pred: Sequence[Iterable[SpanTuple]], partial: bool = False
) -> dict[str, object]:
    """Micro and per-label precision / recall / F1 over tasks (``gold[i]``, ``pred[i]``: task i's spans).

    No span anywhere, predicted or gold: precision, recall and F1 are 1 (nothing was missed or invented).
    """
    tp, n_pred, n_gold = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred, strict=True):
        g = set(g)
        for span in g:
            n_gold[span[2]] += 1
        for span, hit in matches(g, p, partial):
            n_pred[span[2]] += 1
            tp[span[2]] += hit
    labels = sorted(set(n_pred) | set(n_gold))
    micro = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    return {**micro, "per_label": {x: _prf(tp[x], n_pred[x], n_gold[x]) for x in labels}}


def both(gold: Sequence[Iterable[SpanTuple]], pred: Sequence[Iterable[SpanTuple]]) -> dict[str, object]:
    """``{"exact": ..., "partial": ...}`` of ``span_scores``."""
    return {"exact": span_scores(gold, pred), "partial": span_scores(gold, pred, partial=True)}
