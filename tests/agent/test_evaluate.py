"""The split and the folds never leak validation tasks; the exact tests match known values; the rule's power."""

from __future__ import annotations

import math

import pytest

from agent.evaluate import (
    Scored,
    compare,
    correct,
    folds,
    label_f1,
    mcnemar_exact,
    paired,
    sign_test,
    split,
    task_f1,
    tasks_needed,
)
from service.metrics import macro_f1
from service.store.tasks import AnnotatedTask


def tasks(n: int, start: int = 1) -> list[AnnotatedTask]:
    return [AnnotatedTask(i, {"text": f"t{i}"}, {"intent": ["a" if i % 2 else "b"]}) for i in range(start, start + n)]


@pytest.mark.parametrize(
    ("breaks", "fixes", "expected"),
    [
        (0, 0, 1.0),
        (3, 3, 1.0),
        (0, 5, 0.0625),  # 2 * (1/2)^5
        (1, 9, 0.021484375),  # 2 * (1 + 10) / 2^10
        (2, 10, 0.03857421875),  # 2 * (1 + 12 + 66) / 2^12
        (10, 2, 0.03857421875),  # two-sided: symmetric
        (0, 6, 0.03125),
    ],
)
def test_mcnemar_exact_known_values(breaks: int, fixes: int, expected: float) -> None:
    assert math.isclose(mcnemar_exact(breaks, fixes), expected, rel_tol=1e-12)


def test_mcnemar_matches_scipy_binomial_test() -> None:
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(4, 17), (7, 9), (0, 12), (25, 40)]:
        assert math.isclose(mcnemar_exact(b, c), stats.binomtest(b, b + c, 0.5).pvalue, rel_tol=1e-9)


def test_split_is_disjoint_deterministic_and_stable_as_tasks_arrive() -> None:
    first = tasks(40)
    examples, validation = split(first, 0.4, seed=7)
    assert {t.task_id for t in examples}.isdisjoint({t.task_id for t in validation})
    assert len(examples) + len(validation) == 40
    assert 8 <= len(validation) <= 24
    again = split(list(reversed(first)), 0.4, seed=7)
    assert [t.task_id for t in again[1]] == [t.task_id for t in validation]  # order of input does not matter
    grown_examples, grown_validation = split(first + tasks(60, start=41), 0.4, seed=7)
    # a task never changes side when more tasks are annotated: nothing a strategy saw becomes validation
    assert {t.task_id for t in validation} <= {t.task_id for t in grown_validation}
    assert {t.task_id for t in examples} <= {t.task_id for t in grown_examples}
    other = split(first, 0.4, seed=8)[1]
    assert [t.task_id for t in other] != [t.task_id for t in validation]


def test_split_gives_both_sides_a_task_when_it_can() -> None:
    for seed in range(20):
        examples, validation = split(tasks(2), 0.5, seed)
        assert len(examples) == 1 and len(validation) == 1
    assert split(tasks(1), 0.5) in (([], tasks(1)), (tasks(1), []))


def test_correct_needs_every_answered_control_and_ignores_order() -> None:
    assert correct({"a": ["x", "y"], "b": ["z"]}, {"a": ["y", "x"]})
    assert not correct({"a": ["x"]}, {"a": ["x", "y"]})
    assert not correct({}, {"a": ["x"]})


def test_task_f1_is_exact_match_for_one_label_and_partial_for_several() -> None:
    assert task_f1({"a": ["x"]}, {"a": ["x"]}) == 1.0 and task_f1({"a": ["y"]}, {"a": ["x"]}) == 0.0
    assert task_f1({"a": []}, {"a": []}) == 1.0  # nothing applies, nothing chosen: right
    assert task_f1({"a": ["x"]}, {"a": []}) == 0.0
    assert task_f1({"a": ["x", "y"]}, {"a": ["x", "y", "z"]}) == pytest.approx(0.8)
    assert task_f1({"a": ["x"], "b": ["q"]}, {"a": ["x"], "b": ["r"]}) == 0.5  # mean over answered controls
    assert paired([1.0, 0.5, 0.8, 0.0], [1.0, 0.8, 0.5, 0.0]) == ([1], [2])


def test_compare_counts_a_partly_better_multilabel_task_as_a_fix() -> None:
    ts = [AnnotatedTask(i, {"text": f"t{i}"}, {"intents": ["x", "y", "z"]}) for i in range(1, 9)]
    base_preds = [{"intents": ["x"]} for _ in ts]  # one label of three on every task
    cand_preds = [{"intents": ["x", "y"]} for _ in ts]  # two of three: still not exact anywhere
    cand_preds[0] = {"intents": []}  # worse on task 1
    score = lambda preds: Scored(  # noqa: E731
        preds,
        [correct(p, t.gold) for p, t in zip(preds, ts, strict=True)],
        1.0,
        10.0,
        [task_f1(p, t.gold) for p, t in zip(preds, ts, strict=True)],
    )
    result = compare(score(base_preds), score(cand_preds), ts, alpha=0.05)
    assert result.fixes == list(range(2, 9)) and result.breaks == [1]  # exact match alone sees no change at all
    assert math.isclose(result.p_value, sign_test(1, 7)) and result.significant
    assert result.metrics["accuracy"] == {"before": 0.0, "after": 0.0}
    assert result.metrics["task_f1"]["after"] > result.metrics["task_f1"]["before"]


def test_compare_reports_fixes_breaks_and_per_label_changes() -> None:
    ts = tasks(10)
    golds = [t.gold for t in ts]
    base_preds = [{"intent": ["a"]} for _ in ts]  # right on odd ids only
    cand_preds = [dict(g) for g in golds]
    cand_preds[0] = {"intent": ["b"]}  # task 1 broken
    base = Scored(base_preds, [correct(p, g) for p, g in zip(base_preds, golds, strict=True)], 1.0, 10.0)
    cand = Scored(cand_preds, [correct(p, g) for p, g in zip(cand_preds, golds, strict=True)], 1.0, 30.0)
    result = compare(base, cand, ts, alpha=0.05)
    assert result.fixes == [2, 4, 6, 8, 10] and result.breaks == [1]
    assert math.isclose(result.p_value, sign_test(1, 5))  # 7/64
    assert not result.significant  # 5 fixes against 1 break is not enough evidence at 0.05
    assert result.metrics["tasks_needed"] == 18  # 9 fixes against 2 breaks: p = 0.0327
    m = result.metrics
    assert m["accuracy"] == {"before": 0.5, "after": 0.9}
    assert m["macro_f1"]["before"] == round(macro_f1(label_f1(base_preds, golds)), 4)
    assert set(m["per_label"]) == {"a", "b"} and m["per_label"]["b"]["f1_before"] == 0.0
    assert m["prompt_tokens"] == {"before": 10.0, "after": 30.0}
    assert [f["task_id"] for f in m["fixes"]] == [2, 4, 6, 8, 10]
    assert compare(base, cand, ts, alpha=0.25).significant


def test_leave_one_out_scoring_never_shows_a_task_its_own_label(stub_engine, schema) -> None:
    """A pool holding every annotated task is scored as it serves: each task retrieves from all but itself."""
    from agent.evaluate import score
    from service.demonstrations import pool_from_tasks
    from service.predictor import Prompt
    from tests.agent.conftest import labeled

    annotated = [AnnotatedTask(i, {"text": t}, {"intent": [g]}) for i, (t, g) in enumerate(labeled()[:12], start=1)]
    examples = {"pool": pool_from_tasks(schema, annotated), "k": 3}
    seen: list[list[str]] = []

    def predict(schema_, tasks_, prompt, contexts):
        seen.append([c.shots for c in contexts])
        return [type("P", (), {"labels": {"intent": ["loan"]}})() for _ in tasks_]

    score(predict, stub_engine, schema, Prompt("{examples}{text}", examples), annotated[:6], set(), leave_one_out=True)
    shots = [s for call in seen for s in call]
    assert len(shots) == 6
    for task, shot in zip(annotated[:6], shots, strict=True):
        assert task.data["text"] not in shot  # never its own example
        assert shot.count("Intent:") == 3  # but three others, validation tasks included


@pytest.mark.parametrize(
    ("breaks", "fixes", "expected"),
    [(0, 0, 1.0), (0, 5, 1 / 32), (0, 4, 1 / 16), (1, 5, 7 / 64), (5, 1, 63 / 64), (3, 3, 42 / 64)],
)
def test_sign_test_is_one_sided(breaks: int, fixes: int, expected: float) -> None:
    assert math.isclose(sign_test(breaks, fixes), expected, rel_tol=1e-12)


def test_sign_test_matches_scipy_greater() -> None:
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(4, 17), (7, 9), (0, 12), (25, 40), (9, 7)]:
        expected = stats.binomtest(c, b + c, 0.5, alternative="greater").pvalue
        assert math.isclose(sign_test(b, c), expected, rel_tol=1e-9)


def test_tasks_needed_scales_the_observed_gain() -> None:
    assert tasks_needed(2, 0, 6, 0.05) == 14  # 2 of 6 fixed: 14 tasks give round(4.67) = 5 fixes, p = 1/32
    assert tasks_needed(5, 0, 15, 0.05) == 15  # already enough
    assert tasks_needed(3, 3, 20, 0.05) is None  # no gain to prove
    assert tasks_needed(0, 0, 20, 0.05) is None
    n = tasks_needed(11, 9, 100, 0.05)
    assert n is not None and sign_test(round(9 * n / 100), round(11 * n / 100)) < 0.05
    assert sign_test(round(9 * (n - 1) / 100), round(11 * (n - 1) / 100)) >= 0.05


def test_folds_cover_every_task_once_and_are_balanced() -> None:
    ts = tasks(23)
    parts = folds(ts, 5, seed=3)
    ids = [t.task_id for part in parts for t in part]
    assert sorted(ids) == list(range(1, 24)) and len(set(ids)) == 23
    assert {len(p) for p in parts} <= {4, 5}
    assert [len(p) for p in folds(tasks(3), 5)] == [1, 1, 1]  # fewer tasks than folds: leave-one-out
    again = folds(list(reversed(ts)), 5, seed=3)
    assert [[t.task_id for t in p] for p in again] == [[t.task_id for t in p] for p in parts]


def smallest_accepting_n(validation_size, p_value, alpha: float = 0.05) -> int:
    """The fewest annotated tasks at which a 33% -> 67% gain (a third of the validation tasks fixed, none
    broken) is accepted by a rule that validates on ``validation_size(n)`` tasks with ``p_value``."""
    for n in range(2, 1000):
        v = validation_size(n)
        fixes = round(2 * v / 3) - round(v / 3)
        if fixes > 0 and p_value(0, fixes) < alpha:
            return n
    raise AssertionError("never")


def test_power_for_a_33_to_67_gain_before_and_after() -> None:
    """Before: 40% of the annotated tasks held out by the hash split, two-sided McNemar. After: every
    annotated task validated by cross-validation, one-sided. The figures are the README's."""
    held_out = lambda n: len(split(tasks(n), 0.4, seed=0)[1])  # noqa: E731
    before = smallest_accepting_n(held_out, mcnemar_exact)
    after = smallest_accepting_n(lambda n: n, sign_test)
    assert (before, after) == (BEFORE, AFTER)
    assert held_out(20) < 18 and after <= 20  # the demo's 20 chats: provable now, never before


BEFORE, AFTER = 50, 13  # annotated tasks: the hash split held out 16 of 50 (6 fixes); 13 give 5 fixes, p = 1/32
