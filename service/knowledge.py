"""Label knowledge: what a prompt version says each label means.

A label's description is its name as words ("CheckAccountBalance" -> "check account balance"), its Choice
``hint`` from the labeling config, and its definition from the prompt's ``Label definitions:`` section
(``- <label name>: <definition>`` lines, written by a person or proposed by the agent). Editing a definition
in the prompt changes the label's description, and with it the decision.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from constraints.errors import BadInput
from service import embeddings
from service.demonstrations import DEFINITIONS, split_sections, split_template
from service.fusion import description
from service.labeling import ChoiceControl, ProjectSchema

DEFINITION_LINE = re.compile(r"^\s*[-*]\s*(?P<name>[^:\n]+?)\s*:\s*(?P<text>.*)$")


class DefinitionError(BadInput):
    """A definitions section Prompter cannot use: a label outside the set, an empty or repeated definition."""


def definitions(template: str, schema: ProjectSchema, control: ChoiceControl) -> dict[str, str]:
    """Label (stored value) -> its definition in the template's definitions section; DefinitionError names a
    definition of a label the control does not have, an empty one, or a label defined twice."""
    return dict(_definitions(template, schema, control))


@lru_cache(maxsize=256)
def _definitions(template: str, schema: ProjectSchema, control: ChoiceControl) -> tuple[tuple[str, str], ...]:
    instruction, _ = split_template(template, schema)
    section = split_sections(instruction)[1].get(DEFINITIONS)
    if not section:
        return ()
    names = control.label_set.names
    found: dict[str, str] = {}
    for line in section.splitlines():
        match = DEFINITION_LINE.match(line)
        if match is None:
            continue  # prose in the section ("Do not confuse ..."): part of the prompt, not a definition
        name, text = match.group("name").strip(), match.group("text").strip()
        if name not in names:
            raise DefinitionError(
                f"the prompt defines {name!r}, which is not a label of <Choices name={control.name!r}>; "
                f"its labels are: {', '.join(names)}"
            )
        if not text:
            raise DefinitionError(f"the prompt's definition of {name!r} is empty")
        label = control.label_set.label_of(name)
        if label in found:
            raise DefinitionError(f"the prompt defines {name!r} twice")
        found[label] = text
    return tuple(found.items())


def descriptions(template: str, schema: ProjectSchema, control: ChoiceControl) -> list[str]:
    """Each label's description, in label-set order."""
    defined = definitions(template, schema, control)
    ls = control.label_set
    return [description(n, h, defined.get(x, "")) for x, n, h in zip(ls.labels, ls.names, ls.hints, strict=True)]


def label_vectors(template: str, schema: ProjectSchema, control: ChoiceControl) -> np.ndarray:
    """(labels, 384) unit vectors of the descriptions (embedded once per text, cached by ``embeddings``)."""
    return embeddings.embed(descriptions(template, schema, control))
