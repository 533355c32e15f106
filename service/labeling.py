"""What a Label Studio labeling config asks for, read with label-studio-sdk's LabelInterface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from label_studio_sdk.label_interface import LabelInterface
from label_studio_sdk.label_interface.control_tags import (
    ChoicesTag,
    HyperTextLabelsTag,
    LabelsTag,
    NumberTag,
    ParagraphLabelsTag,
    RatingTag,
    TaxonomyTag,
    TextAreaTag,
)

from constraints.errors import BadInput
from constraints.labelset import LabelSet, LabelSetError

TEXT_OBJECTS = {"text", "hypertext", "paragraphs"}
# Span controls and the objects Prompter tags spans on: (control tag, result type, object tags)
SPAN_CONTROLS = {
    LabelsTag: ("labels", frozenset({"text", "hypertext"})),
    HyperTextLabelsTag: ("hypertextlabels", frozenset({"hypertext"})),
}


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
class SpanControl:
    """A Labels (or HyperTextLabels) control: spans of its object's text, each with one label of the set."""

    name: str
    to_name: str
    label_set: LabelSet
    kind: str  # the result type and value key: "labels" | "hypertextlabels"


@dataclass(frozen=True)
class ValueControl:
    """A Rating, Number or Taxonomy control, decided as a choice among its possible values: a rating among
    "1".."maxRating", a number among min..max, a taxonomy among its paths ("A > A1"), whose token trie makes
    each step a choice among the children of the step before."""

    name: str
    to_name: str
    kind: str  # the result type and value key: "rating" | "number" | "taxonomy"
    label_set: LabelSet  # names as the model writes them
    values: tuple[Any, ...] = field(compare=False)  # per label: the Label Studio value (int, or [path])
    options_text: str  # how the prompt's options line describes the values


MAX_NUMBER_VALUES = 1001
TAXONOMY_SEPARATOR = " > "


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
    spans: tuple[SpanControl, ...] = ()
    values: tuple[ValueControl, ...] = ()

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


def _span_control(control: Any, kind: str, targets: frozenset[str], objects: dict[str, Any]) -> SpanControl:
    """A span control whose object Prompter can tag; ConfigError names the tag and the object otherwise."""
    what = f"<{control.tag} name='{control.name}'>"
    to_name = _to_name(control)
    obj = objects.get(to_name)
    if obj is None:
        raise ConfigError(f"{what} points at '{to_name}', which is not an object of the config")
    if obj.tag.lower() not in targets or not obj.value_name:
        supported = " and ".join(sorted(t.capitalize() if t == "text" else "HyperText" for t in targets))
        raise ConfigError(
            f"{what} points at <{obj.tag} name='{obj.name}'>: Prompter tags spans on {supported} objects only"
        )
    labels, names, hints = _choice_attrs(control)
    try:
        label_set = LabelSet(labels=labels, names=names, hints=hints, multiple=True, allow_empty=True)
    except LabelSetError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    return SpanControl(control.name, to_name, label_set, kind)


def _int_attr(control: Any, key: str, default: int | None = None) -> int | None:
    raw = (control.attr or {}).get(key)
    if raw is None:
        return default
    try:
        return int(float(raw))
    except ValueError:
        raise ConfigError(f"<{control.tag} name='{control.name}'>: {key}='{raw}' is not a number") from None


def _taxonomy_paths(xml: str, name: str, leafs_only: bool) -> list[tuple[str, ...]]:
    """The selectable paths of the named Taxonomy, parents before children, in the config's order."""
    root = ElementTree.fromstring(xml)
    tag = next(e for e in root.iter() if e.tag.lower() == "taxonomy" and e.get("name") == name)
    paths: list[tuple[str, ...]] = []

    def walk(element: Any, prefix: tuple[str, ...]) -> None:
        for child in element:
            if child.tag.lower() != "choice":
                continue
            path = (*prefix, child.get("alias") or child.get("value") or "")
            has_children = any(c.tag.lower() == "choice" for c in child)
            if not (leafs_only and has_children):
                paths.append(path)
            walk(child, path)

    walk(tag, ())
    return paths


def _value_control(control: Any, xml: str) -> ValueControl:
    what = f"<{control.tag} name='{control.name}'>"
    to_name = _to_name(control)
    if isinstance(control, RatingTag):
        top = _int_attr(control, "maxRating", 5)
        if not 1 <= top <= 100:
            raise ConfigError(f"{what}: maxRating must be between 1 and 100")
        values: list[Any] = list(range(1, top + 1))
        names = [str(v) for v in values]
        kind, options = "rating", f"a rating from 1 to {top}"
    elif isinstance(control, NumberTag):
        low, high = _int_attr(control, "min"), _int_attr(control, "max")
        if low is None or high is None or high < low or high - low + 1 > MAX_NUMBER_VALUES:
            raise ConfigError(
                f"{what}: Prompter fills a Number with min and max set, at most {MAX_NUMBER_VALUES} values apart"
            )
        values = list(range(low, high + 1))
        names = [str(v) for v in values]
        kind, options = "number", f"a whole number from {low} to {high}"
    else:
        leafs_only = str((control.attr or {}).get("leafsOnly", "false")).lower() == "true"
        paths = _taxonomy_paths(xml, control.name, leafs_only)
        if not paths:
            raise ConfigError(f"{what} has no Choice to select")
        values = [[list(p)] for p in paths]  # Label Studio stores a list of selected paths
        names = [TAXONOMY_SEPARATOR.join(p) for p in paths]
        kind, options = "taxonomy", ", ".join(names)
    try:
        label_set = LabelSet(labels=tuple(names), allow_empty=False)
    except LabelSetError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    return ValueControl(control.name, to_name, kind, label_set, tuple(values), options)


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
    spans: list[SpanControl] = []
    values: list[ValueControl] = []
    textareas: list[TextControl] = []
    all_objects = {o.name: o for o in interface.objects}
    for control in interface.controls:
        span_kind = SPAN_CONTROLS.get(type(control))
        if span_kind is not None:
            spans.append(_span_control(control, *span_kind, all_objects))
        elif isinstance(control, RatingTag | NumberTag | TaxonomyTag):
            values.append(_value_control(control, xml))
        elif isinstance(control, ParagraphLabelsTag):
            raise ConfigError(f"<ParagraphLabels name='{control.name}'>: Prompter does not tag spans in dialogues yet")
        elif isinstance(control, ChoicesTag):
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
    if not choices and not spans and not values and response is None:
        raise ConfigError("the labeling config has no Choices, no Labels and no response TextArea for Prompter to fill")
    return ProjectSchema(tuple(objects), tuple(choices), prompt, response, tuple(spans), tuple(values))


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


def labels_config(labels: Sequence[str], control: str = "label", choices: Sequence[str] = ()) -> str:
    """A config of one Text object (key ``text``) and one Labels control over ``labels`` (and, when given, a
    single Choices ``intent`` control): what ``prompter simulate`` and ``eval`` build for span files."""
    if not labels:
        raise ConfigError("no labels given")
    spans = "\n".join(f"    <Label value={quoteattr(label)}/>" for label in labels)
    extra = ""
    if choices:
        options = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in choices)
        extra = f'  <Choices name="intent" toName="text" choice="single" required="true">\n{options}\n  </Choices>\n'
    return (
        "<View>\n"
        '  <Text name="text" value="$text"/>\n'
        f'  <Labels name={quoteattr(control)} toName="text">\n'
        f"{spans}\n"
        "  </Labels>\n"
        f"{extra}"
        "</View>\n"
    )
