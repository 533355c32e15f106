"""The reference path: outlines-constrained greedy generation over exactly a label set.

Single choice generates one of the names (a regex, xgrammar backend: labels with spaces work); multiple
choice generates distinct names in label-set order (a linear Lark grammar, llguidance backend), so a
repeat or an unknown label cannot be produced. Generators are compiled once per label set and reused;
``rebuild=True`` builds a fresh one per call, as most backends do, for the benchmark.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from constraints.base import Query
from constraints.labelset import LabelSet


def parse_set(text: str, label_set: LabelSet, separator: str = ", ") -> tuple[str, ...]:
    """Names generated under ``set_grammar`` back to Label Studio values (greedy, label-set order)."""
    out: list[str] = []
    rest = text.strip()
    start = 0
    while rest:
        for j in range(start, len(label_set.names)):
            name = label_set.names[j]
            if rest == name or rest.startswith(name + separator):
                out.append(label_set.labels[j])
                rest = rest[len(name) + len(separator) :] if rest != name else ""
                start = j + 1
                break
        else:
            raise ValueError(f"not a label set answer: {text!r}")
    return tuple(out)


class OutlinesLabeler:
    def __init__(self, engine) -> None:
        """``engine`` is a LocalEngine: its model, tokenizer and prompt wrapping are shared."""
        import outlines

        self.engine = engine
        self.model = outlines.from_transformers(engine.model, engine.tokenizer)
        self._generators: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def lead(self) -> str:
        return self.engine.lead

    def _build(self, label_set: LabelSet):
        import outlines
        from outlines.types import CFG, Regex

        if label_set.multiple:
            grammar = CFG(label_set.set_grammar(lead=self.lead))
            return outlines.Generator(self.model, grammar, backend="llguidance")
        return outlines.Generator(self.model, Regex(label_set.choice_regex(self.lead)), backend="xgrammar")

    def generator(self, label_set: LabelSet, rebuild: bool = False):
        if rebuild:
            return self._build(label_set)
        with self._lock:
            gen = self._generators.get(label_set.key)
            if gen is None:
                gen = self._generators[label_set.key] = self._build(label_set)
                while len(self._generators) > 32:
                    self._generators.popitem(last=False)
            return gen

    def label(self, queries: list[Query], label_set: LabelSet, rebuild: bool = False) -> list[tuple[str, ...]]:
        """Greedy constrained answers, one per query, as Label Studio values."""
        out = []
        lead = self.lead
        # a bound in characters: constrained decoding may spell a label with more tokens than usual
        max_tokens = max(len(lead + n) for n in label_set.names) + 2
        if label_set.multiple:
            max_tokens = sum(len(n) + 2 for n in label_set.names) + len(lead) + 2
        for q in queries:
            gen = self.generator(label_set, rebuild)
            text = self.engine.full_text(q)
            with self.engine._lock:
                answer = gen(text, max_new_tokens=max_tokens, do_sample=False)
            if label_set.multiple:
                out.append(parse_set(answer, label_set))
            else:
                out.append((label_set.label_of(answer.strip()),))
        return out
