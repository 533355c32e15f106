"""Demonstrations: annotated tasks shown to the model in the same pattern it answers in.

A demonstration reads ``Text:\\n<task text>\\nIntent:\\n<label>`` (the task block, then the answer after the
cue and the engine's answer lead), so a base model continues the pattern. A prompt version's ``examples``
holds a pool of them; the template's ``{examples}`` variable receives, per task, the ``k`` pool entries
most similar to the task (MiniLM cosine), most similar last, next to the task itself.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from constraints.base import Engine
from service import embeddings
from service.labeling import ChoiceControl, ProjectSchema
from service.prompting import VARIABLE, task_text
from service.store.tasks import AnnotatedTask

Pool = list[dict[str, Any]]  # [{"task_id": int, "text": str, "labels": {control: [label, ...]}}]


def title(name: str) -> str:
    """How a control or object name reads in a prompt (``build_query``'s cue: ``intent`` -> ``Intent``)."""
    words = re.sub(r"[_\-]+", " ", name).strip()
    return (words[:1].upper() + words[1:]) if words else "Answer"


def answer_lead(engine: Engine) -> str:
    """What the engine puts between the cue and the label (a newline for base models)."""
    return getattr(engine, "lead", " ")


def task_block(schema: ProjectSchema) -> str:
    """The task part of agent templates: ``Text:\\n{text}\\n`` for the object the first control labels."""
    control = schema.choices[0] if schema.choices else None
    obj = schema.object_for(control.to_name) if control else schema.objects[0]
    return f"{title(obj.name)}:\n{{{obj.value_key}}}\n"


def split_template(template: str, schema: ProjectSchema) -> tuple[str, str]:
    """(instruction, task part). An agent template ends with ``{examples}`` and the task block; any other
    template's task part starts at the line holding its first task variable. A template without any task
    variable (the default prompt) is all instruction."""
    block = task_block(schema)
    if template.endswith(block):
        head = template[: -len(block)]
        if head.endswith("{examples}"):
            head, block = head[: -len("{examples}")], "{examples}" + block
        return head.rstrip(), block
    task_vars = set(schema.data_keys) | {"text", "examples"}
    first = next((m for m in VARIABLE.finditer(template) if m.group(1) in task_vars), None)
    if first is None:
        return template.rstrip(), ""
    cut = template.rfind("\n", 0, first.start()) + 1
    return template[:cut].rstrip(), template[cut:]


DEFINITIONS, EXAMPLES = "Label definitions:", "Examples:"
SECTION_HEADERS = (DEFINITIONS, EXAMPLES)  # sections the agent writes, in prompt order
_SECTION_START = re.compile(r"\n\n(?=(?:" + "|".join(re.escape(h) for h in SECTION_HEADERS) + r")\n)")


def split_sections(instruction: str) -> tuple[str, dict[str, str]]:
    """(the instruction without agent sections, {header: section body}) so a strategy replaces only its own."""
    parts = _SECTION_START.split("\n\n" + instruction.strip())
    core = parts[0].strip()
    sections = {}
    for part in parts[1:]:
        header, _, body = part.partition("\n")
        sections[header] = body.strip()
    return core, sections


def compose(core: str, schema: ProjectSchema, sections: dict[str, str] | None = None, retrieval: bool = False) -> str:
    """An agent template: the instruction, agent sections (definitions, fixed demonstrations), the task block."""
    parts = [core.strip()] + [f"{h}\n{sections[h].strip()}" for h in SECTION_HEADERS if (sections or {}).get(h)]
    head = "\n\n".join(p for p in parts if p)
    return f"{head}\n\n{'{examples}' if retrieval else ''}{task_block(schema)}"


def pool_from_tasks(schema: ProjectSchema, tasks: list[AnnotatedTask]) -> Pool:
    to_name = schema.choices[0].to_name if schema.choices else None
    return [{"task_id": t.task_id, "text": task_text(schema, t.data, to_name), "labels": dict(t.gold)} for t in tasks]


def _answer(control: ChoiceControl, labels: list[str]) -> str:
    names = [control.label_set.name_of(x) if x in control.label_set.labels else x for x in labels]
    return ", ".join(names)


def render(entry: dict[str, Any], schema: ProjectSchema, lead: str) -> str:
    """One demonstration: the task block filled with the entry's text, then each control's answer."""
    control = schema.choices[0] if schema.choices else None
    obj = schema.object_for(control.to_name) if control else schema.objects[0]
    lines = [f"{title(obj.name)}:\n{entry['text']}"]
    for c in schema.choices:
        if c.name in entry["labels"]:
            lines.append(f"{title(c.name)}:{lead}{_answer(c, entry['labels'][c.name])}")
    return "\n".join(lines) + "\n\n"


def retrieve(
    pool: Pool, texts: list[str], k: int, exclude: set[int] = frozenset(), own: list[int | None] | None = None
) -> list[list[int]]:
    """Indices into ``pool`` of the ``k`` entries most similar to each text, least similar first.

    ``exclude``: task ids no text may retrieve; ``own``: each text's own task id, which only it may not
    retrieve (leave-one-out scoring of a pool that holds the scored tasks).
    """
    usable = [i for i, e in enumerate(pool) if e.get("task_id") not in exclude]
    if not usable or not texts or k <= 0:
        return [[] for _ in texts]
    pool_vecs = embeddings.embed([pool[i]["text"] for i in usable])
    sims = embeddings.embed(texts) @ pool_vecs.T
    ids = [pool[i].get("task_id") for i in usable]
    out = []
    for n, row in enumerate(sims):
        mine = own[n] if own is not None else None
        top = [j for j in np.argsort(-row, kind="stable") if mine is None or ids[j] != mine][:k]
        out.append([usable[j] for j in top[::-1]])
    return out


def examples_for(
    examples: dict[str, Any] | None,
    schema: ProjectSchema,
    datas: list[dict[str, Any]],
    lead: str,
    exclude: set[int] = frozenset(),
    own: list[int | None] | None = None,
) -> list[str] | None:
    """The ``{examples}`` text for each task under a version's ``examples``; None when it has no pool."""
    if not examples or not examples.get("pool"):
        return None
    pool: Pool = examples["pool"]
    to_name = schema.choices[0].to_name if schema.choices else None
    texts = [task_text(schema, d, to_name) for d in datas]
    chosen = retrieve(pool, texts, int(examples.get("k", 8)), exclude, own)
    return ["".join(render(pool[i], schema, lead) for i in idx) for idx in chosen]
