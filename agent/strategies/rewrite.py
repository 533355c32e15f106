"""An instruction rewritten by an LLM shown the current instruction and examples it got wrong: the local
model (``engine.generate``), or a teacher behind an OpenAI-compatible URL (``PROMPTER_AGENT_TEACHER_URL``).

Only the instruction is rewritten; the task block, agent sections and the demonstration pool are kept.
"""

from __future__ import annotations

import time

from agent.strategies.base import Candidate, Context, StrategyError
from agent.strategies.teacher import TeacherError, ask
from constraints.base import Query
from service.demonstrations import compose, split_sections

NAME = "rewrite"
MAX_CHARS = 2_000

META = """You improve instructions for a text classifier.

Current instruction:
{instruction}

Allowed labels: {labels}

The classifier got these wrong:
{failures}
Write a better instruction, in plain prose, that names the labels and says how to tell apart the ones it confuses.
Reply with the instruction only.

Improved instruction:"""


def _failures(ctx: Context) -> str:
    lines = []
    for m in ctx.mistakes[: ctx.settings.rewrite_failures]:
        text = " ".join(ctx.text_of(m.task).split())[:300]
        lines.append(f"Text: {text}\nClassifier said: {', '.join(m.predicted)}\nCorrect: {', '.join(m.gold)}\n")
    return "\n".join(lines)


def meta_prompt(ctx: Context, core: str) -> str:
    labels = ", ".join(n for c in ctx.schema.choices for n in c.label_set.names)
    return META.format(instruction=core or "(none)", labels=labels, failures=_failures(ctx))


def _clean(text: str) -> str:
    text = text.strip().strip('"').strip()
    for marker in ("Improved instruction:", "Instruction:"):
        if text.lower().startswith(marker.lower()):
            text = text[len(marker) :].strip()
    return text[:MAX_CHARS].strip()


def propose(ctx: Context) -> Candidate | None:
    if not ctx.mistakes:
        return None
    core, sections = split_sections(ctx.instruction)
    prompt = meta_prompt(ctx, core)
    started = time.perf_counter()
    s = ctx.settings
    if s.teacher_url:
        try:
            reply = ask(
                s.teacher_url, prompt, s.teacher_model, s.teacher_api, s.rewrite_max_tokens, s.teacher_timeout_s,
                s.teacher_api_key,
            )  # fmt: skip
        except TeacherError as exc:
            raise StrategyError(str(exc)) from None
        text, tokens, who = reply.text, reply.tokens or ctx.engine.count_tokens(prompt + reply.text), s.teacher_url
    else:
        text = ctx.engine.generate([Query(prompt, "", "")], s.rewrite_max_tokens)[0]
        tokens, who = ctx.engine.count_tokens(prompt) + ctx.engine.count_tokens(text), f"local {ctx.engine.model_id}"
    new_core = _clean(text)
    if not new_core or new_core == core:
        raise StrategyError(f"the rewriter ({who}) returned no new instruction")
    return Candidate(
        NAME,
        compose(new_core, ctx.schema, sections, retrieval=ctx.base_retrieves),
        ctx.base_examples,  # the pool is evidence whether or not the template shows demonstrations
        ctx.base_decision,
        tokens=tokens,
        seconds=time.perf_counter() - started,
        note=f"instruction rewritten by {who}",
    )
