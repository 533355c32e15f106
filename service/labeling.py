"""What a Label Studio labeling config asks for, read with label-studio-sdk's LabelInterface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from xml.sax.saxutils import quoteattr

from label_studio_sdk.label_interface import LabelInterface
from label_studio_sdk.label_interface.control_tags import ChoicesTag, TextAreaTag

from constraints.errors import BadInput
from constraints.labelset import LabelSet, LabelSetError

TEXT_OBJECTS = {"text", "hypertext", "paragraphs"}


class ConfigError(BadInput):
    """A labeling config Prompter cannot label with; the message says why."""


@dataclass(frozen=True)
class DataObject:
    name: str
    tag: str  # "text" | "hypertext" | "paragraphs"
    value_key: str  # task data key, without the "$"
    name_key: str = "author"  # Paragraphs only
    text_key: str = "text"


@dataclass(frozen=True)
class ChoiceControl:
    name: str
    to_name: str
    label_set: LabelSet


@dataclass(frozen=True)
class TextControl:
    name: str
    to_name: str


@dataclass(frozen=True)
class ProjectSchema:
    objects: tuple[DataObject, ...]
    choices: tuple[ChoiceControl, ...]
    prompt: TextControl | None
    response: TextControl | None

    @property
    def data_keys(self) -> tuple[str, ...]:
        return tuple(o.value_key for o in self.objects)

    def object_for(self, control_to_name: str) -> DataObject:
        for o in self.objects:
            if o.name == control_to_name:
                return o
        return self.objects[0]


def _to_name(tag: Any) -> str:
    to = tag.to_name
    return to[0] if isinstance(to, list) else str(to)


def _choice_attrs(tag: ChoicesTag) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Stored values (alias or value), visible values, and hints of a Choices tag's children."""
    labels, names, hints = [], [], []
    for label, child in tag.labels_attrs.items():
        attr = child.attr or {}
        labels.append(label)
        names.append(attr.get("value", label))
        hints.append(attr.get("hint", "") or "")
    return tuple(labels), tuple(names), tuple(hints)


def _required(tag: Any) -> bool:
    return str((tag.attr or {}).get("required", "false")).lower() == "true"


@lru_cache(maxsize=256)
def parse_config(xml: str, prompt_prefix: str = "prompt", response_name: str | None = None) -> ProjectSchema:
    """Parse a labeling config; raise ConfigError when there is nothing Prompter can fill."""
    if not xml or not xml.strip():
        raise ConfigError("the labeling config is empty")
    try:
        interface = LabelInterface(xml)
    except Exception as exc:  # the SDK raises many kinds on malformed XML
        raise ConfigError(f"the labeling config is not valid XML: {exc}") from None

    objects = []
    for obj in interface.objects:
        tag = obj.tag.lower()
        if tag not in TEXT_OBJECTS or not obj.value_name:
            continue
        attr = obj.attr or {}
        objects.append(
            DataObject(
                name=obj.name,
                tag=tag,
                value_key=obj.value_name,
                name_key=attr.get("nameKey", "author"),
                text_key=attr.get("textKey", "text"),
            )
        )
    if not objects:
        raise ConfigError("the labeling config has no Text, HyperText or Paragraphs object to read")

    choices: list[ChoiceControl] = []
    textareas: list[TextControl] = []
    for control in interface.controls:
        if isinstance(control, ChoicesTag):
            labels, names, hints = _choice_attrs(control)
            try:
                label_set = LabelSet(
                    labels=labels,
                    names=names,
                    hints=hints,
                    multiple=bool(control.is_multiple_choice),
                    allow_empty=not _required(control),
                )
            except LabelSetError as exc:
                raise ConfigError(f"Choices '{control.name}': {exc}") from None
            choices.append(ChoiceControl(control.name, _to_name(control), label_set))
        elif isinstance(control, TextAreaTag):
            textareas.append(TextControl(control.name, _to_name(control)))

    prompt = next((t for t in textareas if t.name.lower().startswith(prompt_prefix.lower())), None)
    others = [t for t in textareas if t is not prompt]
    if response_name:
        response = next((t for t in others if t.name == response_name), None)
    else:
        response = others[0] if others else None
    if not choices and response is None:
        raise ConfigError("the labeling config has no Choices and no response TextArea for Prompter to fill")
    return ProjectSchema(tuple(objects), tuple(choices), prompt, response)


def choices_config(labels: Sequence[str], multiple: bool = False, control: str = "label") -> str:
    """A labeling config of one Text object (task data key ``text``) and one Choices control over ``labels``:
    what ``prompter label``/``eval`` build from ``--labels``, and the benchmarks and ``prompter simulate`` use."""
    if not labels:
        raise ConfigError("no labels given")
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    mode = 'choice="multiple"' if multiple else 'choice="single" required="true"'
    return (
        "<View>\n"
        '  <Text name="text" value="$text"/>\n'
        f'  <Choices name={quoteattr(control)} toName="text" {mode}>\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )
