"""Demonstrations retrieved per task: the pool is the annotated examples, ``k`` nearest shown per task.

The candidate keeps the base instruction, puts ``{examples}`` right before the task, and carries the pool
(shown to the reviewer). Measured on intent sets, this is what helps a small base model most.
"""

from __future__ import annotations

from agent.strategies.base import Candidate, Context
from service.demonstrations import compose, pool_from_tasks, split_sections

NAME = "retrieval"


def propose(ctx: Context) -> Candidate | None:
    if not ctx.examples:
        return None
    pool = pool_from_tasks(ctx.schema, ctx.examples)
    k = ctx.settings.demos_k
    if ctx.base_retrieves:
        old = ctx.base_examples or {}
        same = {e["task_id"] for e in old.get("pool", [])} == {e["task_id"] for e in pool}
        if same and int(old.get("k", k)) == k:
            return None  # nothing new to retrieve from
    core, sections = split_sections(ctx.instruction)
    text, examples = compose(core, ctx.schema, sections, retrieval=True), {"pool": pool, "k": k}
    return Candidate(
        NAME,
        text,
        examples,
        ctx.fitted(text, examples),
        note=f"{k} of {len(pool)} annotated examples retrieved per task by MiniLM similarity, most similar last; "
        "the combiner's weights fitted on them",
    )
