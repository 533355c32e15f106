"""A fixed set of demonstrations written into the prompt: one typical example per label the model confuses
(then per frequent label), near-duplicates skipped, within a token budget. Fixed text sits in the shared
prefix, so once cached it costs little per task."""

from __future__ import annotations

from collections import Counter

from agent.strategies.base import Candidate, Context
from service import embeddings
from service.demonstrations import EXAMPLES, compose, split_sections

NAME = "fixed_demos"


def propose(ctx: Context) -> Candidate | None:
    by_label: dict[str, list] = {}
    for task in ctx.examples:
        label = ctx.first_label(task)
        if label is not None:
            by_label.setdefault(label, []).append(task)
    if not by_label:
        return None
    confused = ctx.confused_labels()
    frequent = Counter({label: len(tasks) for label, tasks in by_label.items()})
    order = [x for x, _ in confused.most_common() if x in by_label]
    order += [x for x, _ in frequent.most_common() if x not in order]

    budget = ctx.settings.demo_token_budget
    demos, labels, used, kept = [], [], 0, []
    for label in order:
        picked = ctx.central(by_label[label], 1, kept)
        if not picked:
            continue
        text = ctx.demo(picked[0])
        cost = ctx.engine.count_tokens(text)
        if used + cost > budget:
            continue
        demos.append(text)
        labels.append(label)
        used += cost
        kept.append(embeddings.embed([ctx.text_of(picked[0])])[0])
    if not demos:
        return None
    core, sections = split_sections(ctx.instruction)
    sections[EXAMPLES] = "".join(demos)
    text = compose(core, ctx.schema, sections, retrieval=ctx.base_retrieves)
    covered = sum(1 for x in labels if x in confused)
    return Candidate(
        NAME,
        text,
        ctx.base_examples,  # the pool is evidence whether or not the template shows demonstrations
        ctx.base_decision,
        note=f"{len(demos)} fixed demonstrations ({used} tokens), {covered} for labels the model confused",
    )
