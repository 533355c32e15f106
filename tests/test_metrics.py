"""Metrics against values computed by hand."""

from __future__ import annotations

import pytest

from service import metrics

GOLD = [["a"], ["a"], ["b"], ["b"], ["c"], ["c"]]
PRED = [["a"], ["b"], ["b"], ["b"], ["a"], ["c"]]
LABELS = ["a", "b", "c", "d"]


def test_single_choice_accuracy_and_per_label() -> None:
    assert metrics.accuracy(GOLD, PRED) == pytest.approx(4 / 6)
    scores = metrics.per_label(GOLD, PRED, LABELS)
    # a: 1 hit of 2 predicted, 2 gold; b: 2 of 3 predicted, 2 gold; c: 1 of 1 predicted, 2 gold
    assert scores["a"].precision == pytest.approx(0.5) and scores["a"].recall == pytest.approx(0.5)
    assert scores["a"].f1 == pytest.approx(0.5)
    assert scores["b"].precision == pytest.approx(2 / 3) and scores["b"].recall == pytest.approx(1.0)
    assert scores["b"].f1 == pytest.approx(0.8)
    assert scores["c"].precision == pytest.approx(1.0) and scores["c"].recall == pytest.approx(0.5)
    assert scores["c"].f1 == pytest.approx(2 / 3)
    assert (scores["c"].support, scores["c"].predicted) == (2, 1)
    # d never occurs: zero everywhere and left out of the macro average
    assert scores["d"].as_dict() == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0}
    assert metrics.macro_f1(scores) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert metrics.micro_f1(GOLD, PRED) == pytest.approx(4 / 6)


def test_confusion_matrix_and_top_confusions() -> None:
    flat_gold = [g[0] for g in GOLD]
    flat_pred = [p[0] for p in PRED]
    matrix = metrics.confusion_matrix(flat_gold, flat_pred, ["a", "b", "c"])
    assert matrix == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics.top_confusions(matrix, ["a", "b", "c"]) == [("a", "b", 1), ("c", "a", 1)]


def test_multi_label_exact_match_micro_and_macro() -> None:
    gold = [["x", "y"], ["x"], ["y"], []]
    pred = [["x"], ["x"], ["y", "x"], []]
    assert metrics.exact_match(gold, pred) == [False, True, False, True]
    assert metrics.accuracy(gold, pred) == pytest.approx(0.5)
    scores = metrics.per_label(gold, pred, ["x", "y"])
    assert scores["x"].precision == pytest.approx(2 / 3) and scores["x"].recall == pytest.approx(1.0)
    assert scores["y"].precision == pytest.approx(1.0) and scores["y"].recall == pytest.approx(0.5)
    assert metrics.macro_f1(scores) == pytest.approx((0.8 + 2 / 3) / 2)
    assert metrics.micro_f1(gold, pred) == pytest.approx(0.75)  # 3 hits of 4 predicted, 4 gold


def test_reliability_curve_and_ece() -> None:
    scores = [0.95, 0.85, 0.75, 0.65, 0.55, 0.15]
    correct = [True, True, False, True, False, False]
    # one prediction per bin: |1-.95| + |1-.85| + |0-.75| + |1-.65| + |0-.55| + |0-.15| = 2.0
    assert metrics.expected_calibration_error(scores, correct, bins=10) == pytest.approx(2.0 / 6)
    curve = metrics.reliability_curve(scores, correct, bins=2)
    assert [b.count for b in curve] == [1, 5]
    assert curve[1].confidence == pytest.approx(0.75) and curve[1].accuracy == pytest.approx(0.6)
    # bin 0: |0 - .15| * 1; bin 1: |.6 - .75| * 5
    assert metrics.expected_calibration_error(scores, correct, bins=2) == pytest.approx((0.15 + 0.75) / 6)


def test_score_of_one_falls_in_the_last_bin() -> None:
    curve = metrics.reliability_curve([1.0, 0.0], [True, False], bins=4)
    assert [b.count for b in curve] == [1, 0, 0, 1]
    assert metrics.expected_calibration_error([1.0, 0.0], [True, False], bins=4) == 0.0


def test_accuracy_coverage_and_threshold() -> None:
    points = metrics.accuracy_coverage([0.9, 0.8, 0.8, 0.6], [True, False, True, False])
    assert [(p.threshold, p.kept, p.coverage) for p in points] == [(0.9, 1, 0.25), (0.8, 3, 0.75), (0.6, 4, 1.0)]
    assert [p.accuracy for p in points] == pytest.approx([1.0, 2 / 3, 0.5])
    assert metrics.threshold_for_accuracy(points, 0.6).threshold == 0.8  # widest coverage reaching 60%
    assert metrics.threshold_for_accuracy(points, 0.7).threshold == 0.9
    assert metrics.threshold_for_accuracy(points, 0.5).coverage == 1.0
    none_right = metrics.accuracy_coverage([0.9, 0.5], [False, False])
    assert metrics.threshold_for_accuracy(none_right, 0.1) is None


def test_summarize_is_json_ready_and_consistent() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    out = metrics.summarize(GOLD, PRED, scores, LABELS, target_accuracy=0.75)
    assert out["tasks"] == 6 and out["correct"] == 4
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["confusion"]["matrix"][0] == [1, 1, 0, 0]
    assert out["per_label"]["b"]["f1"] == pytest.approx(0.8)
    assert out["threshold"]["kept"] == 4  # the four most confident: a ok, b wrong, b ok, b ok -> 75%
    assert sum(b["count"] for b in out["reliability"]) == 6


def test_empty_and_mismatched_inputs() -> None:
    assert metrics.accuracy([], []) == 0.0
    assert metrics.expected_calibration_error([], []) == 0.0
    with pytest.raises(ValueError, match="2 gold items but 1 predictions"):
        metrics.accuracy([["a"], ["b"]], [["a"]])
