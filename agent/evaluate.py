"""Evaluation before proposing: cross-validation folds, paired scoring of two prompts, a one-sided exact test.

Every annotated task is validated once: the tasks are dealt into ``k`` folds by a hash of (seed, task id), and
each fold's candidate is built by the strategy from the other folds only, so no candidate is ever scored on a
task it learned from. The paired answers of all folds are pooled and tested together: an exact sign test on
the discordant pairs, one-sided (the candidate better, not merely different).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.demos import examples_for
from agent.tasks import AnnotatedTask
from constraints.base import Engine
from service.labeling import ProjectSchema
from service.predictor import TaskPrediction, predict_tasks
from service.prompting import build_query

TEST_NAME = "exact sign test, one-sided (McNemar's discordant pairs: the candidate better, not merely different)"

# (schema, tasks, prompt, per-task examples) -> predictions; the service passes one through its model queue
Predict = Callable[[ProjectSchema, list[dict[str, Any]], str, list[str] | None], list[TaskPrediction]]


class NoAnnotations(RuntimeError):
    """A refinement was asked for a project without annotated tasks to learn from (the API answers 409)."""


def direct_predictor(engine: Engine) -> Predict:
    def predict(schema, tasks, prompt, examples):
        return predict_tasks(engine, schema, tasks, prompt, examples=examples)

    return predict


# -- split ------------------------------------------------------------------------------------------


def _unit(seed: int, task_id: int) -> float:
    digest = hashlib.sha256(f"{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split(
    tasks: list[AnnotatedTask], fraction: float, seed: int = 0
) -> tuple[list[AnnotatedTask], list[AnnotatedTask]]:
    """(examples a strategy may see, validation tasks it may not); disjoint, stable as tasks are added.

    With two tasks or more both sides get at least one: the smallest and largest hash values decide.
    """
    keyed = sorted(tasks, key=lambda t: _unit(seed, t.task_id))
    validation = [t for t in keyed if _unit(seed, t.task_id) < fraction]
    examples = [t for t in keyed if _unit(seed, t.task_id) >= fraction]
    if len(tasks) >= 2 and not validation:
        validation, examples = keyed[:1], keyed[1:]
    elif len(tasks) >= 2 and not examples:
        validation, examples = keyed[:-1], keyed[-1:]
    by_id = lambda t: t.task_id  # noqa: E731
    return sorted(examples, key=by_id), sorted(validation, key=by_id)


# -- statistics -------------------------------------------------------------------------------------


def mcnemar_exact(breaks: int, fixes: int) -> float:
    """Two-sided exact McNemar p-value: P(a split of the discordant pairs at least this uneven | no effect)."""
    n = breaks + fixes
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(breaks, fixes) + 1)) / 2**n
    return min(1.0, 2 * tail)


def sign_test(breaks: int, fixes: int) -> float:
    """One-sided exact McNemar (sign) test: P(at least ``fixes`` of the discordant pairs go the candidate's way
    | each pair goes either way with probability 1/2)."""
    n = breaks + fixes
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) for i in range(fixes, n + 1)) / 2**n)


def tasks_needed(fixes: int, breaks: int, n: int, alpha: float, limit: int = 100_000) -> int | None:
    """The fewest annotated tasks at which the observed gain (``fixes`` and ``breaks`` per ``n`` tasks, scaled)
    would pass the test at ``alpha``; None when there is no gain to prove or not even ``limit`` tasks would do."""
    if n <= 0 or fixes <= breaks:
        return None

    def passes(m: int) -> bool:
        return sign_test(round(breaks * m / n), round(fixes * m / n)) < alpha

    if passes(n):
        return n
    low, high = n, 2 * n
    while not passes(high):
        low, high = high, 2 * high
        if high > limit:
            return None
    while high - low > 1:  # the p-value falls as m grows (up to rounding): the first m that passes
        mid = (low + high) // 2
        low, high = (low, mid) if passes(mid) else (mid, high)
    return high


def hash_order(tasks: list[AnnotatedTask], seed: int = 0) -> list[AnnotatedTask]:
    """Tasks in the order of their (seed, task id) hash: a stable shuffle, whatever order they come in."""
    return sorted(tasks, key=lambda t: (_unit(seed, t.task_id), t.task_id))


def folds(tasks: list[AnnotatedTask], k: int, seed: int = 0) -> list[list[AnnotatedTask]]:
    """``k`` disjoint folds covering every task (sizes within one of each other), dealt in hash order; at most
    one fold per task. Each fold is sorted by task id."""
    keyed = hash_order(tasks, seed)
    k = max(1, min(k, len(keyed)))
    return [sorted(keyed[i::k], key=lambda t: t.task_id) for i in range(k)]


def correct(pred: dict[str, list[str]], gold: dict[str, list[str]]) -> bool:
    """Every control the annotator answered got exactly the annotator's labels."""
    return all(set(pred.get(name, [])) == set(labels) for name, labels in gold.items())


def label_f1(preds: list[dict[str, list[str]]], golds: list[dict[str, list[str]]]) -> dict[str, dict[str, float]]:
    """Per ``control/label`` (``label`` alone with one control): F1 and support, over labels seen in gold or pred."""
    counts: dict[str, list[int]] = {}  # key -> [tp, fp, fn]
    controls = {name for g in golds for name in g}
    for pred, gold in zip(preds, golds, strict=True):
        for name, labels in gold.items():
            got, want = set(pred.get(name, [])), set(labels)
            key = (lambda x, n=name: x) if len(controls) == 1 else (lambda x, n=name: f"{n}/{x}")
            for x in got | want:
                c = counts.setdefault(key(x), [0, 0, 0])
                c[0] += x in got and x in want
                c[1] += x in got and x not in want
                c[2] += x in want and x not in got
    out = {}
    for key, (tp, fp, fn) in sorted(counts.items()):
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        out[key] = {"f1": f1, "support": tp + fn}
    return out


@dataclass
class Scored:
    """One prompt's answers on the validation tasks."""

    preds: list[dict[str, list[str]]]
    correct: list[bool]
    seconds: float
    prompt_tokens: float  # mean tokens per query: what the prompt costs at labeling time

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct) if self.correct else 0.0

    @staticmethod
    def join(parts: list[Scored]) -> Scored:
        """One prompt's answers over several folds, in fold order; tokens averaged over all tasks."""
        n = sum(len(p.correct) for p in parts)
        tokens = sum(p.prompt_tokens * len(p.correct) for p in parts)
        return Scored(
            [x for p in parts for x in p.preds],
            [x for p in parts for x in p.correct],
            sum(p.seconds for p in parts),
            tokens / n if n else 0.0,
        )


def score(
    predict: Predict,
    engine: Engine,
    schema: ProjectSchema,
    template: str,
    examples: dict[str, Any] | None,
    tasks: list[AnnotatedTask],
    exclude: set[int],
    leave_one_out: bool = False,
) -> Scored:
    """Answers of ``template`` (with its pool, minus ``exclude``) on ``tasks``; one batched call per control.

    ``leave_one_out``: each task retrieves from the pool without itself (and ``exclude``), as a pool that
    holds every annotated task serves new ones.
    """
    started = time.perf_counter()
    datas = [t.data for t in tasks]
    lead = getattr(engine, "lead", " ")
    own = [t.task_id for t in tasks] if leave_one_out else None
    shots = examples_for(examples, schema, datas, lead, exclude, own)
    preds = predict(schema, [t.as_task() for t in tasks], template, shots)
    seconds = time.perf_counter() - started
    labels = [p.labels for p in preds]
    tokens = 0
    if schema.choices and tasks:
        control = schema.choices[0]
        for i, d in enumerate(datas):
            query = build_query(template, schema, d, control, examples=shots[i] if shots else "")
            tokens += engine.count_tokens(query.text)
    return Scored(
        labels,
        [correct(p, t.gold) for p, t in zip(labels, tasks, strict=True)],
        seconds,
        tokens / len(tasks) if tasks else 0.0,
    )


@dataclass
class Comparison:
    fixes: list[int] = field(default_factory=list)  # task ids the candidate gets right and the base got wrong
    breaks: list[int] = field(default_factory=list)
    p_value: float = 1.0
    significant: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)


def macro_f1(per_label: dict[str, dict[str, float]]) -> float:
    return sum(v["f1"] for v in per_label.values()) / len(per_label) if per_label else 0.0


def compare(
    base: Scored, cand: Scored, tasks: list[AnnotatedTask], alpha: float, cost: dict[str, Any] | None = None
) -> Comparison:
    """Paired comparison on the same validation tasks; significant when it fixes more than it breaks and the
    one-sided exact p-value is below ``alpha``. When it is not, ``tasks_needed`` says how many annotated tasks
    would make the observed gain significant (None: no gain to prove)."""
    golds = [t.gold for t in tasks]
    fixes = [t.task_id for t, b, c in zip(tasks, base.correct, cand.correct, strict=True) if c and not b]
    breaks = [t.task_id for t, b, c in zip(tasks, base.correct, cand.correct, strict=True) if b and not c]
    p = sign_test(len(breaks), len(fixes))
    before, after = label_f1(base.preds, golds), label_f1(cand.preds, golds)
    changes = {}
    for key in sorted(set(before) | set(after)):
        f0 = before.get(key, {}).get("f1", 0.0)
        f1 = after.get(key, {}).get("f1", 0.0)
        if abs(f1 - f0) > 1e-9:
            support = max(before.get(key, {}).get("support", 0), after.get(key, {}).get("support", 0))
            changes[key] = {"f1_before": round(f0, 4), "f1_after": round(f1, 4), "support": support}
    by_id = {t.task_id: (t, i) for i, t in enumerate(tasks)}

    def detail(ids: list[int]) -> list[dict[str, Any]]:
        rows = []
        for i in ids:
            task, j = by_id[i]
            rows.append({"task_id": i, "gold": task.gold, "before": base.preds[j], "after": cand.preds[j]})
        return rows

    significant = len(fixes) > len(breaks) and p < alpha
    metrics = {
        "validation_tasks": len(tasks),
        "accuracy": {"before": round(base.accuracy, 4), "after": round(cand.accuracy, 4)},
        "macro_f1": {"before": round(macro_f1(before), 4), "after": round(macro_f1(after), 4)},
        "fixes": detail(fixes),
        "breaks": detail(breaks),
        "per_label": changes,
        "test": TEST_NAME,
        "p_value": p,
        "alpha": alpha,
        "significant": significant,
        "tasks_needed": None if significant else tasks_needed(len(fixes), len(breaks), len(tasks), alpha),
        "prompt_tokens": {"before": round(base.prompt_tokens, 1), "after": round(cand.prompt_tokens, 1)},
        "cost": cost or {},
    }
    return Comparison(fixes, breaks, p, significant, metrics)
