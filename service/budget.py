"""What a ``/predict`` will cost, known before any model work: long task texts cut to a token budget, and a request
that cannot finish within Label Studio's predict timeout refused at once.

The rule (README, "Long texts and large requests"):

- **Cost** of a request = for every task and Choices control, its text's tokens (after cutting) plus the label trie's
  tokens plus ``TASK_OVERHEAD_TOKENS`` for the prompt's per-task lines; plus, for an interactive request with a response
  TextArea, ``DECODE_STEP_TOKENS`` per free-text token. Seconds = cost / the prefill rate.
- **Prefill rate**: the rate measured on this process's own batches (tokens per second of model time, a moving
  average), starting from the start rate: ``PROMPTER_PREFILL_TOKENS_PER_S`` or, for the local engine on a CPU,
  ``CPU_TOKENS_PER_S`` (unknown for a remote engine until its first batch: nothing is refused before).
- **Cut**: a task text longer than ``PROMPTER_TASK_TOKENS`` tokens keeps its first 3/4 and its last 1/4 of that budget,
  joined by ``CUT_MARK``. The default budget is what the model reads in ``TASK_SECONDS`` at the start rate (not the
  live one, so that labels do not depend on the machine's load), at most the model's context less
  ``CONTEXT_RESERVE`` tokens for the prompt and labels.
- **Refusal**: when the cost exceeds ``PROMPTER_PREDICT_TIMEOUT_S`` (Label Studio's ``ML_TIMEOUT_PREDICT``), 413 with a
  ``detail`` that says how many tasks fit and names ``prompter label --project``. One task is never refused: cut to the
  budget it costs about ``TASK_SECONDS``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from constraints.base import Engine
from service.labeling import ProjectSchema
from service.prompting import render_value
from service.settings import settings

# Issue 13's measurement on this project's 2-core CPU (embedded Gemma 3 270M, bfloat16): 30 tasks of 15,000 characters
# (~3,400 tokens each) in one /predict took 149 s, about 690 tokens/s. On the same CPU busy with other jobs (load 7-9)
# it fell to 90-160 tokens/s (benchmarks/results/health.md): the live rate then takes over, after the first batch.
CPU_TOKENS_PER_S = 700.0
TASK_SECONDS = 4.0  # a single task's text is cut to what the model reads in this long
CONTEXT_RESERVE = 1024  # tokens of the model's context kept for the instruction, labels and demonstrations
DEFAULT_CONTEXT = 8192  # when the model does not say
TASK_OVERHEAD_TOKENS = 16  # "Chat:\n", the cue, the end-of-label token
DECODE_STEP_TOKENS = 100  # one free-text token costs about a prefill of this many tokens (0.12 s vs 0.24 s / 215)
CUT_MARK = "\n[...]\n"
HEAD_SHARE = 0.75


@dataclass(frozen=True)
class Cut:
    """One task text cut for the model: which data key, its tokens before and what was kept."""

    key: str
    tokens: int
    kept: int

    def note(self) -> str:
        return f"'{self.key}' cut for the model from {self.tokens} to {self.kept} tokens (PROMPTER_TASK_TOKENS)"


@dataclass(frozen=True)
class Estimate:
    tasks: int
    tokens: int
    rate: float  # tokens per second of model time
    timeout_s: float

    @property
    def seconds(self) -> float:
        return self.tokens / self.rate

    @property
    def too_long(self) -> bool:
        return self.tasks > 1 and self.seconds > self.timeout_s

    def detail(self, project_id: str) -> str:
        fit = max(1, int(self.tasks * self.timeout_s / self.seconds))
        return (
            f"{self.tasks} tasks of {self.tokens} tokens in all would take about {self.seconds:.0f} s of model time "
            f"at {self.rate:.0f} tokens/s, more than Label Studio waits for /predict ({self.timeout_s:.0f} s, "
            f"PROMPTER_PREDICT_TIMEOUT_S = its ML_TIMEOUT_PREDICT): select at most about {fit} of these tasks per "
            f"request, or label them all offline with `prompter label --project {project_id.split('.')[0]} "
            f"--ls-url ... --ls-api-key ...`"
        )


class PrefillRate:
    """Tokens per second of model time, averaged over this process's batches (the start value until one ran)."""

    def __init__(self, start: float | None, weight: float = 0.3) -> None:
        self.value = start
        self.weight = weight
        self._lock = threading.Lock()

    def observe(self, tokens: int, seconds: float) -> None:
        if tokens <= 0 or seconds <= 0:
            return
        measured = tokens / seconds
        with self._lock:
            self.value = measured if self.value is None else (1 - self.weight) * self.value + self.weight * measured


_rates: dict[str, PrefillRate] = {}


def start_rate(engine: Engine) -> float | None:
    """PROMPTER_PREFILL_TOKENS_PER_S, else the CPU figure for the local engine on a CPU, else unknown (None)."""
    if settings.prefill_tokens_per_s is not None:
        return settings.prefill_tokens_per_s
    return CPU_TOKENS_PER_S if engine.name == "local" and _on_cpu(engine) else None


def prefill_rate(engine: Engine) -> PrefillRate:
    """The engine's live rate: measured on this process's batches, from ``start_rate`` until then."""
    key = f"{engine.name}:{engine.model_id}"
    if key not in _rates:
        _rates[key] = PrefillRate(start_rate(engine))
    return _rates[key]


def _on_cpu(engine: Engine) -> bool:
    device = getattr(getattr(engine, "scorer", None), "device", None)
    return device is None or getattr(device, "type", "cpu") == "cpu"


def context_tokens(engine: Engine) -> int:
    config = getattr(getattr(engine, "model", None), "config", None)
    text = config.get_text_config(decoder=True) if config is not None else None
    return int(getattr(text, "max_position_embeddings", None) or DEFAULT_CONTEXT)


def task_token_budget(engine: Engine) -> int:
    """PROMPTER_TASK_TOKENS, or: what the model reads in TASK_SECONDS at the start rate, within its context less
    the reserve. Not the live rate: a task's labels must not depend on how busy the machine was."""
    if settings.task_tokens is not None:
        return settings.task_tokens
    room = max(256, context_tokens(engine) - CONTEXT_RESERVE)
    rate = start_rate(engine)
    return room if rate is None else max(256, min(room, int(rate * TASK_SECONDS)))


def cut_text(engine: Engine, text: str, budget: int) -> tuple[str, int]:
    """(text, its token count before cutting): the first 3/4 and the last 1/4 of ``budget`` tokens if longer."""
    encode = getattr(engine, "encode", None)
    if encode is None:  # an engine without token ids: count, and cut by the characters' share
        tokens = engine.count_tokens(text)
        if tokens <= budget:
            return text, tokens
        keep = int(len(text) * budget / tokens)
        head = int(keep * HEAD_SHARE)
        return text[:head] + CUT_MARK + text[len(text) - (keep - head) :], tokens
    ids = encode(text)
    if len(ids) <= budget:
        return text, len(ids)
    head = int(budget * HEAD_SHARE)
    decode = engine.tokenizer.decode
    return decode(ids[:head]) + CUT_MARK + decode(ids[len(ids) - (budget - head) :]), len(ids)


def cut_tasks(
    engine: Engine, schema: ProjectSchema, tasks: list[Any], budget: int
) -> tuple[list[Any], list[list[Cut]], list[int]]:
    """(tasks for the model, cuts per task, text tokens per task). A cut task is a copy whose cut values are the
    rendered, cut text (a dialogue becomes its ``author: text`` lines); the caller's tasks are left as they are."""
    out, cuts, tokens = [], [], []
    for task in tasks:
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):  # check_tasks says what is wrong with it
            out.append(task)
            cuts.append([])
            tokens.append(0)
            continue
        new_data, task_cuts, task_tokens = dict(data), [], 0
        for obj in schema.objects:
            if obj.value_key not in data:
                continue
            text = render_value(obj, data[obj.value_key])
            kept, count = cut_text(engine, text, budget)
            if kept is not text:
                new_data[obj.value_key] = kept
                task_cuts.append(Cut(obj.value_key, count, budget))
            task_tokens += min(count, budget)
        out.append({**task, "data": new_data} if task_cuts else task)
        cuts.append(task_cuts)
        tokens.append(task_tokens)
    return out, cuts, tokens


def text_tokens(engine: Engine, schema: ProjectSchema, tasks: list[dict]) -> list[int]:
    """Each task's text tokens, as the model reads them (the tasks the model queue runs are already cut)."""
    return [
        sum(engine.count_tokens(render_value(o, t["data"][o.value_key])) for o in schema.objects if o.value_key in data)
        for t in tasks
        if isinstance(data := t["data"], dict)
    ]


def estimate(
    engine: Engine, schema: ProjectSchema, text_tokens: list[int], interactive: bool, response_tokens: int
) -> Estimate | None:
    """The request's cost; None when the engine's rate is unknown (a remote engine before its first batch)."""
    rate = prefill_rate(engine).value
    start = start_rate(engine)
    if start is not None:  # a busy moment (one-task batches, a first prompt's reference) never refuses a batch
        rate = max(rate or start, start)  # the model finishes at the configured rate or faster
    if rate is None:
        return None
    return Estimate(len(text_tokens), cost_tokens(schema, text_tokens, interactive, response_tokens), rate,
                    settings.predict_timeout_s)  # fmt: skip


def cost_tokens(schema: ProjectSchema, text_tokens: list[int], interactive: bool, response_tokens: int) -> int:
    per_control = sum(len(c.label_set) * 2 + TASK_OVERHEAD_TOKENS for c in schema.choices)  # ~2 trie nodes a label
    total = sum(t * len(schema.choices) for t in text_tokens) + per_control * len(text_tokens)
    if interactive and schema.response and response_tokens:
        total += DECODE_STEP_TOKENS * response_tokens * len(text_tokens)
    return total


def mark_cut(result: list[dict], cuts: list[Cut]) -> list[dict]:
    """The prediction's regions, each choices region carrying a ``meta`` note of the cut (Label Studio keeps a
    region's ``meta`` and shows its text as the region's note)."""
    if not cuts:
        return result
    note = "; ".join(c.note() for c in cuts)
    return [{**r, "meta": {"text": [note]}} if r.get("type") == "choices" else r for r in result]
