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
from dataclasses import dataclass, field
from typing import Any

from constraints.base import Engine
from constraints.errors import Conflict
from service import metrics
from service.labeling import ProjectSchema
from service.predictor import LeaveOut, Predict, Prompt, prepare
from service.prompting import build_query
from service.store.tasks import AnnotatedTask

TEST_NAME = (
    "exact sign test, one-sided (McNemar's discordant pairs: the candidate better, not merely different; "
    "a pair is a task whose F1 against the annotation differs, i.e. whose exact match differs for single choice)"
)


class NoAnnotations(Conflict):
    """A refinement was asked for a project without annotated tasks to learn from (the API answers 409)."""


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


def beats(fixes: int, breaks: int, alpha: float) -> tuple[float, bool]:
    """The agent's rule for "better than the base": (the one-sided exact p-value, whether it fixes more tasks
    than it breaks with p below ``alpha``). Proposals and live evaluations both decide by it."""
    p = sign_test(breaks, fixes)
    return p, fixes > breaks and p < alpha


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


def task_f1(pred: dict[str, list[str]], gold: dict[str, list[str]]) -> float:
    """How right one task is: the mean over the controls the annotator answered of the F1 of the predicted label
    set against the annotated one (an empty set against an empty set is 1). For single choice this is exact
    match (1 or 0); for multiple choice a partly right answer counts partly, so the paired test sees a task
    that went from two of three labels right to three of three."""
    if not gold:
        return 1.0
    total = 0.0
    for name, labels in gold.items():
        p, g = set(pred.get(name, [])), set(labels)
        total += 1.0 if not p and not g else 2 * len(p & g) / (len(p) + len(g))
    return total / len(gold)


def paired(base: list[float], cand: list[float]) -> tuple[list[int], list[int]]:
    """(indices the candidate does better on, indices it does worse on): the discordant pairs of the test."""
    fixes = [i for i, (b, c) in enumerate(zip(base, cand, strict=True)) if c > b + 1e-9]
    breaks = [i for i, (b, c) in enumerate(zip(base, cand, strict=True)) if c < b - 1e-9]
    return fixes, breaks


def label_f1(preds: list[dict[str, list[str]]], golds: list[dict[str, list[str]]]) -> dict[str, metrics.LabelScores]:
    """Per ``control/label`` (``label`` alone with one control), over labels seen in gold or pred; each control
    scored on the tasks whose annotation answers it."""
    controls = sorted({name for g in golds for name in g})
    out: dict[str, metrics.LabelScores] = {}
    for name in controls:
        pairs = [(g[name], p.get(name, [])) for p, g in zip(preds, golds, strict=True) if name in g]
        gold, pred = [g for g, _ in pairs], [p for _, p in pairs]
        labels = sorted({x for labels in gold + pred for x in labels})
        for label, scores in metrics.per_label(gold, pred, labels).items():
            out[label if len(controls) == 1 else f"{name}/{label}"] = scores
    return dict(sorted(out.items()))


@dataclass
class Scored:
    """One prompt's answers on the validation tasks."""

    preds: list[dict[str, list[str]]]
    correct: list[bool]
    seconds: float
    prompt_tokens: float  # mean tokens per query: what the prompt costs at labeling time
    quality: list[float] | None = None  # per-task F1 (``task_f1``); None: taken from ``correct``

    def __post_init__(self) -> None:
        if self.quality is None:
            self.quality = [float(c) for c in self.correct]

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
            [x for p in parts for x in p.quality or []],
        )


def score(
    predict: Predict,
    engine: Engine,
    schema: ProjectSchema,
    prompt: Prompt,
    tasks: list[AnnotatedTask],
    exclude: set[int],
    leave_one_out: bool = False,
) -> Scored:
    """Answers of ``prompt`` (with its pool, minus ``exclude``) on ``tasks``; one batched call per control.

    ``leave_one_out``: each task retrieves from the pool without itself (and ``exclude``), as a pool that
    holds every annotated task serves new ones.
    """
    started = time.perf_counter()
    as_tasks = [t.as_task() for t in tasks]
    contexts = prepare(engine, schema, as_tasks, prompt, LeaveOut(frozenset(exclude), own=leave_one_out))
    preds = predict(schema, as_tasks, prompt, contexts)
    seconds = time.perf_counter() - started
    labels = [p.labels for p in preds]
    tokens = 0
    if schema.choices and tasks:
        control = schema.choices[0]
        for t, c in zip(tasks, contexts, strict=True):
            tokens += engine.count_tokens(build_query(prompt.text, schema, t.data, control, examples=c.shots).text)
    return Scored(
        labels,
        [correct(p, t.gold) for p, t in zip(labels, tasks, strict=True)],
        seconds,
        tokens / len(tasks) if tasks else 0.0,
        [task_f1(p, t.gold) for p, t in zip(labels, tasks, strict=True)],
    )


def _mean(values: list[float] | None) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass
class Comparison:
    fixes: list[int] = field(default_factory=list)  # task ids the candidate gets right and the base got wrong
    breaks: list[int] = field(default_factory=list)
    p_value: float = 1.0
    significant: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)


def compare(
    base: Scored, cand: Scored, tasks: list[AnnotatedTask], alpha: float, cost: dict[str, Any] | None = None
) -> Comparison:
    """Paired comparison on the same validation tasks; significant when it fixes more than it breaks and the
    one-sided exact p-value is below ``alpha``. A fix is a task whose F1 against the annotation rose (``task_f1``:
    exact match for single choice), a break one whose F1 fell. When it is not significant, ``tasks_needed`` says
    how many annotated tasks would make the observed gain significant (None: no gain to prove)."""
    golds = [t.gold for t in tasks]
    up, down = paired(base.quality or [], cand.quality or [])
    fixes, breaks = [tasks[i].task_id for i in up], [tasks[i].task_id for i in down]
    p, significant = beats(len(fixes), len(breaks), alpha)
    before, after = label_f1(base.preds, golds), label_f1(cand.preds, golds)
    changes = {}
    for key in sorted(set(before) | set(after)):
        f0 = before[key].f1 if key in before else 0.0
        f1 = after[key].f1 if key in after else 0.0
        if abs(f1 - f0) > 1e-9:
            support = max(s.support for s in (before.get(key), after.get(key)) if s is not None)
            changes[key] = {"f1_before": round(f0, 4), "f1_after": round(f1, 4), "support": support}
    by_id = {t.task_id: (t, i) for i, t in enumerate(tasks)}

    def detail(ids: list[int]) -> list[dict[str, Any]]:
        rows = []
        for i in ids:
            task, j = by_id[i]
            rows.append({"task_id": i, "gold": task.gold, "before": base.preds[j], "after": cand.preds[j]})
        return rows

    figures = {
        "validation_tasks": len(tasks),
        "accuracy": {"before": round(base.accuracy, 4), "after": round(cand.accuracy, 4)},
        "task_f1": {"before": round(_mean(base.quality), 4), "after": round(_mean(cand.quality), 4)},
        "macro_f1": {"before": round(metrics.macro_f1(before), 4), "after": round(metrics.macro_f1(after), 4)},
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
    return Comparison(fixes, breaks, p, significant, figures)
