"""A Choices control's label set as a value: what the model may answer, and nothing else."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from constraints.errors import BadInput

REGEX_SPECIAL = re.compile(r"([\\.^$|?*+()\[\]{}])")


def _escape(text: str) -> str:
    """Escape regex metacharacters only (xgrammar warns on escaped spaces)."""
    return REGEX_SPECIAL.sub(r"\\\1", text)


class LabelSetError(BadInput):
    """A label set that cannot be turned into a constraint (empty, duplicated labels...)."""


@dataclass(frozen=True)
class LabelSet:
    """The labels of one Choices control.

    ``labels`` are the values Label Studio stores (a Choice's alias if it has one);
    ``names`` are what the model reads and writes (the Choice's visible value), same order.
    """

    labels: tuple[str, ...]
    multiple: bool = False
    allow_empty: bool = False
    names: tuple[str, ...] = ()
    hints: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.labels:
            raise LabelSetError("a Choices control needs at least one label")
        if len(set(self.labels)) != len(self.labels):
            dupes = sorted({x for x in self.labels if self.labels.count(x) > 1})
            raise LabelSetError(f"duplicate labels: {dupes}")
        if not self.names:
            object.__setattr__(self, "names", self.labels)
        if len(self.names) != len(self.labels):
            raise LabelSetError("names and labels differ in length")
        if len(set(self.names)) != len(self.names):
            raise LabelSetError("two choices share the same visible value")
        if any(not n.strip() for n in self.names):
            raise LabelSetError("a label is empty or blank")
        if not self.hints:
            object.__setattr__(self, "hints", ("",) * len(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def key(self) -> tuple:
        """Cache key of everything a compiled constraint depends on."""
        return (self.names, self.multiple, self.allow_empty)

    def label_of(self, name: str) -> str:
        return self.labels[self.names.index(name)]

    def name_of(self, label: str) -> str:
        return self.names[self.labels.index(label)]

    def choice_regex(self, lead: str = "") -> str:
        """Exactly one of the names after ``lead`` (for outlines-constrained generation)."""
        alternatives = "|".join(_escape(n) for n in sorted(self.names, key=len, reverse=True))
        return f"{_escape(lead)}({alternatives})"

    def set_grammar(self, separator: str = ", ", lead: str = "") -> str:
        """A Lark grammar for distinct names in the label set's order, joined by ``separator``.

        Fixing the order makes repeats impossible; as a grammar (not a regex) it stays linear in the
        number of labels. ``t_i`` is any increasing run of labels that starts at label ``i`` or later.
        """
        n = len(self.names)
        sep = json.dumps(separator)
        lit_lead = json.dumps(lead)
        start = f"start: {lit_lead} t0" if lead else "start: t0"
        if self.allow_empty:
            start += f" | {lit_lead}"
        rules = [start]
        for i, name in enumerate(self.names):
            lit = json.dumps(name, ensure_ascii=False)
            if i == n - 1:
                rules.append(f"t{i}: {lit}")
            else:
                rules.append(f"t{i}: {lit} ({sep} t{i + 1})? | t{i + 1}")
        return "\n".join(rules) + "\n"
