"""Definitions for the label pairs the model confuses: the Choice's ``hint`` when the config has one,
else a definition built from annotated examples of the label; then which pairs not to confuse."""

from __future__ import annotations

from agent.strategies.base import Candidate, Context
from service.demonstrations import DEFINITIONS, compose, split_sections

NAME = "definitions"
QUOTE_CHARS = 120


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return '"' + (text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…") + '"'


def propose(ctx: Context) -> Candidate | None:
    pairs = [pair for pair, _ in ctx.confused_pairs().most_common(ctx.settings.confused_pairs)]
    if not pairs or not ctx.schema.choices:
        return None
    label_set = ctx.schema.choices[0].label_set
    by_label: dict[str, list] = {}
    for task in ctx.examples:
        label = ctx.first_label(task)
        if label is not None:
            by_label.setdefault(label, []).append(task)

    lines, seen = [], set()
    for pair in pairs:
        for label in pair:
            if label in seen or label not in label_set.labels:
                continue
            seen.add(label)
            name = label_set.name_of(label)
            hint = label_set.hints[label_set.labels.index(label)].strip()
            typical = ctx.central(by_label.get(label, []), ctx.settings.definition_examples)
            quotes = [_quote(ctx.text_of(t)) for t in typical]
            if hint:
                lines.append(f"- {name}: {hint}" + (f" For example: {'; '.join(quotes)}." if quotes else ""))
            elif quotes:
                lines.append(f"- {name}: requests like {'; '.join(quotes)}.")
    if not lines:
        return None
    names = [" vs ".join(label_set.name_of(x) for x in pair if x in label_set.labels) for pair in pairs]
    lines.append("Do not confuse " + "; ".join(n for n in names if " vs " in n) + ".")
    core, sections = split_sections(ctx.instruction)
    sections[DEFINITIONS] = "\n".join(lines)
    return Candidate(
        NAME,
        compose(core, ctx.schema, sections, retrieval=ctx.base_retrieves),
        ctx.base_examples,  # the pool is evidence whether or not the template shows demonstrations
        ctx.base_decision,
        note=f"definitions for {len(seen)} labels in {len(pairs)} confused pairs",
    )
