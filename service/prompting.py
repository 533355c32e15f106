"""Prompt templates -> model queries: task data fills variables, dialogues render as ``author: text``.

A template may name any task data key (``{dialogue}``, ``{text}``, ...), ``{labels}``, and ``{examples}``
(demonstrations chosen per task by the agent); other braces are left as they are, so prompts with JSON or
literal braces are fine. The text before the first task
variable is the query's shared prefix (cached across tasks by the engine).
"""

from __future__ import annotations

import html
import re
from typing import Any

from constraints.base import Query
from service.labeling import ChoiceControl, DataObject, ProjectSchema, SpanControl, ValueControl

VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
TAG = re.compile(r"<[^>]+>")


def render_value(obj: DataObject, value: Any) -> str:
    """The text the model reads for one data object."""
    if obj.tag == "paragraphs" and isinstance(value, list):
        lines = []
        for turn in value:
            if isinstance(turn, dict):
                author = str(turn.get(obj.name_key, "") or "").strip()
                text = str(turn.get(obj.text_key, "") or "").strip()
                lines.append(f"{author}: {text}" if author else text)
            else:
                lines.append(str(turn))
        return "\n".join(line for line in lines if line)
    if isinstance(value, list | dict):
        return str(value)
    text = "" if value is None else str(value)
    if obj.tag == "hypertext":
        text = html.unescape(TAG.sub(" ", text))
        text = re.sub(r"[ \t]+", " ", text)
    return text.strip()


Control = ChoiceControl | SpanControl | ValueControl


def label_list(control: Control) -> str:
    """What the options line says: the labels, or a Rating's / Number's range."""
    if isinstance(control, ValueControl):
        return control.options_text
    return ", ".join(control.label_set.names)


def default_prompt(schema: ProjectSchema) -> str:
    """A sensible zero-shot instruction that names the labels."""
    parts = []
    for control in schema.choices:
        obj = schema.object_for(control.to_name)
        kind = "conversation" if obj.tag == "paragraphs" else "text"
        how = "every label that applies" if control.label_set.multiple else "the one label that fits best"
        parts.append(
            f"Classify the {kind} by {_title(control.name).lower()}: choose {how} from: {label_list(control)}."
        )
    for control in schema.spans:
        parts.append(
            f"Tag {_title(control.name).lower()} in the text: for each span that is one of {label_list(control)}, "
            "write a line 'label: span' with the span copied exactly from the text, in text order; "
            "write none if there is no such span."
        )
    for control in schema.values:
        what = {"rating": "Rate", "number": "Answer with", "taxonomy": "Choose the category path of"}[control.kind]
        parts.append(f"{what} {_title(control.name).lower()}: {label_list(control)}.")
    if not parts:
        return "Read the text and answer briefly."
    return "\n".join(parts)


def _title(name: str) -> str:
    words = re.sub(r"[_\-]+", " ", name).strip()
    return (words[:1].upper() + words[1:]) if words else "Answer"


def _data_text(schema: ProjectSchema, data: dict[str, Any], obj: DataObject) -> str:
    return render_value(obj, data.get(obj.value_key))


_AGENT_TASK_PART = re.compile(r"\n*(?:\{examples\})?[^\n{}]*:\n\{([A-Za-z_][A-Za-z0-9_]*)\}\s*$")


def shown_prompt(template: str, schema: ProjectSchema) -> str:
    """The prompt as Label Studio's Prompt box shows it: an agent template without its ``{examples}`` and
    task block (``Chat:\n{dialogue}``), so annotators read the instruction, not placeholders. Any other
    template is shown as written."""
    task_vars = {o.value_key for o in schema.objects} | set(schema.data_keys) | {"text"}
    match = _AGENT_TASK_PART.search(template)
    if match is None or match.group(1) not in task_vars:
        return template
    return template[: match.start()].rstrip() or template


def build_query(
    template: str,
    schema: ProjectSchema,
    data: dict[str, Any],
    control: Control | None,
    cue: str | None = None,
    examples: str = "",
) -> Query:
    """One query for one task and one control (``control=None``: the free-text response)."""
    obj = schema.object_for(control.to_name) if control else schema.objects[0]
    values: dict[str, str] = {}
    for o in schema.objects:
        values[o.value_key] = _data_text(schema, data, o)
    for key, value in data.items():
        values.setdefault(key, value if isinstance(value, str) else str(value))
    values.setdefault("text", values[obj.value_key])
    values["examples"] = examples
    task_vars = set(values)

    labels_text = label_list(control) if control else ""
    first_task_var = next((m for m in VARIABLE.finditer(template) if m.group(1) in task_vars), None)

    def fill(part: str) -> str:
        def sub(m: re.Match) -> str:
            key = m.group(1)
            if key == "labels" and control:
                return labels_text
            return values[key] if key in values else m.group(0)

        return VARIABLE.sub(sub, part)

    if first_task_var is None:
        prefix, body = fill(template).rstrip() + "\n", ""
    else:
        cut = template.rfind("\n", 0, first_task_var.start()) + 1  # cache up to a clean line boundary
        prefix, body = fill(template[:cut]), fill(template[cut:]).rstrip() + "\n"

    if control and "{labels}" not in template and not all(n in template for n in control.label_set.names):
        prefix += f"Options: {labels_text}\n"
    if first_task_var is None:
        prefix += "\n"
        body = f"{_title(obj.name)}:\n{values[obj.value_key]}\n"
    if cue is None:
        cue = f"{_title(control.name)}:" if control else "Answer:"
    return Query(prefix=prefix, body=body, cue=cue)


def task_text(schema: ProjectSchema, data: dict[str, Any], control_to_name: str | None = None) -> str:
    """The text the model reads for a task: the object a Choices control labels (the first by default)."""
    obj = schema.object_for(control_to_name) if control_to_name else schema.objects[0]
    return render_value(obj, data.get(obj.value_key))
