"""Classification and calibration metrics as pure functions over plain lists (no model, no store, no I/O).

Each task's gold and predicted labels are sequences of label strings: one label for single choice, a set for
multiple choice. ``scores`` are the prediction's confidence in (0, 1]; ``correct`` says whether the prediction
matched the gold labels exactly. Undefined ratios (no predictions of a label, no tasks) are 0.0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

Labels = Sequence[str]


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


@dataclass(frozen=True)
class LabelScores:
    precision: float
    recall: float
    f1: float
    support: int  # tasks whose gold labels include this label
    predicted: int  # tasks whose predicted labels include this label

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def exact_match(gold: Sequence[Labels], pred: Sequence[Labels]) -> list[bool]:
    """Per task: the predicted label set equals the gold label set."""
    _same_length(gold, pred)
    return [set(g) == set(p) for g, p in zip(gold, pred, strict=True)]


def accuracy(gold: Sequence[Labels], pred: Sequence[Labels]) -> float:
    """Share of tasks predicted exactly (for multiple choice: exact-match accuracy)."""
    hits = exact_match(gold, pred)
    return _ratio(sum(hits), len(hits))


def per_label(gold: Sequence[Labels], pred: Sequence[Labels], labels: Sequence[str]) -> dict[str, LabelScores]:
    """Precision, recall and F1 of each label, treating each label as its own yes/no question."""
    _same_length(gold, pred)
    tp: Counter[str] = Counter()
    gold_count: Counter[str] = Counter()
    pred_count: Counter[str] = Counter()
    for g, p in zip(gold, pred, strict=True):
        g_set, p_set = set(g), set(p)
        gold_count.update(g_set)
        pred_count.update(p_set)
        tp.update(g_set & p_set)
    out = {}
    for label in labels:
        precision = _ratio(tp[label], pred_count[label])
        recall = _ratio(tp[label], gold_count[label])
        out[label] = LabelScores(precision, recall, _f1(precision, recall), gold_count[label], pred_count[label])
    return out


def macro_f1(scores: dict[str, LabelScores]) -> float:
    """Mean F1 over the labels that occur in the gold or the predicted labels (as scikit-learn's default)."""
    seen = [s.f1 for s in scores.values() if s.support or s.predicted]
    return _ratio(sum(seen), len(seen))


def micro_f1(gold: Sequence[Labels], pred: Sequence[Labels]) -> float:
    """F1 over all (task, label) decisions pooled; equals accuracy for single choice."""
    _same_length(gold, pred)
    tp = sum(len(set(g) & set(p)) for g, p in zip(gold, pred, strict=True))
    n_pred = sum(len(set(p)) for p in pred)
    n_gold = sum(len(set(g)) for g in gold)
    return _f1(_ratio(tp, n_pred), _ratio(tp, n_gold))


def confusion_matrix(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """``m[i][j]``: tasks with gold ``labels[i]`` predicted as ``labels[j]`` (single choice)."""
    _same_length(gold, pred)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, pred, strict=True):
        if g in index and p in index:
            matrix[index[g]][index[p]] += 1
    return matrix


def top_confusions(matrix: list[list[int]], labels: Sequence[str], n: int = 10) -> list[tuple[str, str, int]]:
    """The ``n`` most frequent (gold, predicted, count) errors, most frequent first."""
    pairs = [
        (labels[i], labels[j], count) for i, row in enumerate(matrix) for j, count in enumerate(row) if i != j and count
    ]
    return sorted(pairs, key=lambda x: (-x[2], x[0], x[1]))[:n]


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    count: int
    confidence: float  # mean score of the predictions in the bin
    accuracy: float  # share of them that are correct


def reliability_curve(scores: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[Bin]:
    """Equal-width confidence bins over [0, 1]; a score of exactly 1.0 falls in the last bin."""
    _same_length(scores, correct)
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, s in enumerate(scores):
        members[min(int(s * bins), bins - 1)].append(i)
    out = []
    for b, idx in enumerate(members):
        conf = _ratio(sum(scores[i] for i in idx), len(idx))
        acc = _ratio(sum(bool(correct[i]) for i in idx), len(idx))
        out.append(Bin(b / bins, (b + 1) / bins, len(idx), conf, acc))
    return out


def expected_calibration_error(scores: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of the predictions."""
    curve = reliability_curve(scores, correct, bins)
    total = sum(b.count for b in curve)
    return _ratio(sum(b.count * abs(b.accuracy - b.confidence) for b in curve), total)


@dataclass(frozen=True)
class CoveragePoint:
    threshold: float  # keep predictions with score >= threshold
    coverage: float  # share of tasks kept
    accuracy: float  # accuracy on the kept tasks
    kept: int


def accuracy_coverage(scores: Sequence[float], correct: Sequence[bool]) -> list[CoveragePoint]:
    """One point per distinct score, from the strictest threshold (highest score) to keeping everything."""
    _same_length(scores, correct)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    points: list[CoveragePoint] = []
    hits = 0
    for rank, i in enumerate(order, 1):
        hits += bool(correct[i])
        last_of_score = rank == len(order) or scores[order[rank]] != scores[i]
        if last_of_score:
            points.append(CoveragePoint(scores[i], rank / len(order), hits / rank, rank))
    return points


def threshold_for_accuracy(points: Sequence[CoveragePoint], target: float) -> CoveragePoint | None:
    """The point with the widest coverage whose accuracy reaches ``target``; None if no threshold does."""
    reaching = [p for p in points if p.accuracy >= target]
    return max(reaching, key=lambda p: (p.coverage, p.threshold)) if reaching else None


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} gold items but {len(b)} predictions")


def summarize(
    gold: Sequence[Labels],
    pred: Sequence[Labels],
    scores: Sequence[float],
    labels: Sequence[str],
    multiple: bool = False,
    bins: int = 10,
    target_accuracy: float | None = None,
) -> dict:
    """Every metric of one prediction run as plain JSON-ready values."""
    correct = exact_match(gold, pred)
    scores_by_label = per_label(gold, pred, labels)
    points = accuracy_coverage(scores, correct)
    out: dict = {
        "tasks": len(gold),
        "correct": sum(correct),
        "accuracy": accuracy(gold, pred),
        "macro_f1": macro_f1(scores_by_label),
        "micro_f1": micro_f1(gold, pred),
        "ece": expected_calibration_error(scores, correct, bins),
        "mean_score": _ratio(sum(scores), len(scores)),
        "per_label": {label: s.as_dict() for label, s in scores_by_label.items()},
        "reliability": [asdict(b) for b in reliability_curve(scores, correct, bins)],
        "coverage": [asdict(p) for p in points],
    }
    if not multiple:
        flat_gold = [g[0] if g else "" for g in gold]
        flat_pred = [p[0] if p else "" for p in pred]
        matrix = confusion_matrix(flat_gold, flat_pred, labels)
        out["confusion"] = {"labels": list(labels), "matrix": matrix}
        out["top_confusions"] = [list(x) for x in top_confusions(matrix, labels)]
    if target_accuracy is not None:
        point = threshold_for_accuracy(points, target_accuracy)
        out["target_accuracy"] = target_accuracy
        out["threshold"] = asdict(point) if point else None
    return out
