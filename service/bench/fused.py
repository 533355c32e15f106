"""The fused decision's cost next to the retrieval prompt's (issue 10): what a task costs through the whole
decision path (``service.predictor.label_tasks``: MiniLM evidence, the model on the zero-shot prompt, the
combiner) when the corrections are the version's pool, as the agent's "weights" strategy leaves it.

Measured in the same ``prompter bench --shots K`` run as the engine on the retrieval prompt (K demonstrations
per task), on the same tasks and pool: interactive p50 (one task per call), batch tasks/s (one call over all
tasks), and a bare prefill of the zero-shot prompt it sends the model (its floor).
"""

from __future__ import annotations

from typing import Any

from service.bench.common import LabeledSet, Samples, bench_prompt, make_queries, percentile, prefill
from service.predictor import Prompt, label_tasks

# issue 10 targets, read from the benchmark
TARGET_WITHIN = 0.2  # interactive p50 and batch tasks/s within 20% of the retrieval prompt's
TARGET_FUSED_OVER_PREFILL = 1.3


def pool_entries(data: LabeledSet) -> list[dict[str, Any]]:
    return [{"task_id": i, "text": t, "labels": {"intent": [g]}} for i, (t, g) in enumerate(data.pool)]


def measure(engine, data: LabeledSet, interactive: int, k: int, lead: str = "\n") -> dict[str, Any]:
    """The fused decision on ``data``'s tasks with ``data.pool`` as the version's pool (default weights)."""
    zero_shot = bench_prompt(data.labels)
    schema = zero_shot.schema
    prompt = Prompt(zero_shot.template, {"pool": pool_entries(data), "k": k})
    _, queries = make_queries(data.labels, data.texts, zero_shot, lead)
    tasks = [{"id": i + 1, "data": {"text": t}} for i, t in enumerate(data.texts)]
    n = len(tasks)
    label_tasks(engine, schema, tasks[:2], prompt)  # MiniLM loaded, the pool embedded, the reference scored
    one, floor = Samples(), Samples()
    for task, query in list(zip(tasks, queries, strict=True))[: max(1, min(interactive, n))]:
        one.time(lambda task=task: label_tasks(engine, schema, [task], prompt))
        floor.time(lambda query=query: prefill(engine, query))
    batch = Samples()
    preds = batch.time(lambda: label_tasks(engine, schema, tasks, prompt))
    chosen = [p.labels["intent"][0] for p in preds]
    return {
        "interactive_p50_s": percentile(one.wall, 50),
        "interactive_p95_s": percentile(one.wall, 95),
        "prefill_p50_s": percentile(floor.wall, 50),
        "batch_tasks_per_s": n / batch.wall[0],
        "accuracy": sum(c == g for c, g in zip(chosen, data.gold, strict=True)) / n,
        "pool": len(data.pool),
        "note": "label_tasks with the pool as evidence and the zero-shot prompt for the model (default weights)",
    }


def compare(fused: dict[str, Any], retrieval_p50: float, retrieval_tasks_per_s: float) -> dict[str, Any]:
    """The ratios the issue's targets read, against the engine on the retrieval prompt in the same run."""
    over_retrieval = fused["interactive_p50_s"] / retrieval_p50
    batch_share = fused["batch_tasks_per_s"] / retrieval_tasks_per_s
    over_prefill = fused["interactive_p50_s"] / fused["prefill_p50_s"]
    return {
        "p50_over_retrieval": over_retrieval,
        "batch_tasks_per_s_over_retrieval": batch_share,
        "p50_over_own_prefill": over_prefill,
        "targets": {
            "fused_p50_within_20pct_of_retrieval": over_retrieval <= 1 + TARGET_WITHIN,
            "fused_batch_within_20pct_of_retrieval": batch_share >= 1 - TARGET_WITHIN,
            "fused_p50_le_1.3x_prefill": over_prefill <= TARGET_FUSED_OVER_PREFILL,
        },
    }
