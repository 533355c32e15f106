"""The interface every model engine implements. Adding an engine is adding a module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from constraints.errors import BadInput, Unavailable
from constraints.labelset import LabelSet


@dataclass(frozen=True)
class Query:
    """One model input, split so the shared part can be cached across tasks.

    ``prefix`` is the text that does not depend on the task (instruction, label list, demonstrations);
    ``body`` is the task-dependent rest. The engine wraps ``prefix + body`` in the model's chat template,
    if it has one, then appends ``cue`` and scores or generates the answer after it.
    """

    prefix: str
    body: str
    cue: str = ""  # starts the answer ("Intent:"); after the chat template's assistant turn if there is one

    @property
    def text(self) -> str:
        return self.prefix + self.body + self.cue


@dataclass(frozen=True)
class Decision:
    """The labels chosen for one Choices control, with the model's probabilities."""

    labels: tuple[str, ...]  # Label Studio values, label-set order, distinct
    score: float  # probability of this decision, in (0, 1]
    probs: dict[str, float] = field(default_factory=dict)  # single: P(label); multiple: P(label applies)


class EngineNotReady(Unavailable):
    """The model is still loading."""


class EngineUnavailable(Unavailable):
    """The model server cannot answer now (down, timed out, failing); the request may be retried later."""


class EngineRefused(BadInput):
    """The model server refused a request (a prompt over its context length, a model it does not serve)."""


class Engine(Protocol):
    name: str
    model_id: str

    def label_logprobs(self, queries: list[Query], label_set: LabelSet):
        """(queries, labels) log P(label | query, the answer is one of the labels): the exact distribution
        constrained decoding draws from; batched. The service fuses these with its other evidence."""
        ...

    def decide(self, queries: list[Query], label_set: LabelSet) -> list[Decision]:
        """The model alone: labels for each query from ``label_logprobs`` (the benchmarks' rule)."""
        ...

    def generate(self, queries: list[Query], max_tokens: int) -> list[str]:
        """Free-text answers (one line each) for each query."""
        ...

    def count_tokens(self, text: str) -> int: ...
