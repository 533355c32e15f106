"""The annotated examples as evidence, and the combiner's weights fitted on them: the base prompt unchanged (no
demonstrations in it, so the model reads as few tokens as before), the examples as the version's pool (each
task's nearest annotated tasks and label centroids), and weights fitted leave-one-out on those examples.
Measured on intent sets, this carries most of what corrections teach (docs/fused-decision-research.md, issue 10).
"""

from __future__ import annotations

from agent.strategies.base import Candidate, Context
from service.demonstrations import pool_from_tasks

NAME = "weights"


def propose(ctx: Context) -> Candidate | None:
    if not ctx.examples:
        return None
    pool = pool_from_tasks(ctx.schema, ctx.examples)
    k = int((ctx.base_examples or {}).get("k", ctx.settings.demos_k))
    examples = {"pool": pool, "k": k}
    decision = ctx.fitted(ctx.base_text, examples)
    fitted = sum(1 for d in decision.values() if d["reference"] is not None)
    return Candidate(
        NAME,
        ctx.base_text,
        examples,
        decision,
        note=f"{len(pool)} annotated examples as evidence; weights "
        + (f"fitted on them for {fitted} control(s)" if fitted else "kept at the defaults (too few to fit)"),
    )
