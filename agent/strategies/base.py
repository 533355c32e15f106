"""What every strategy sees (``Context``) and returns (``Candidate``), and how it fails (``StrategyError``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.strategies.fitting import fit_decision
from constraints.base import Engine
from constraints.errors import PrompterError
from service import embeddings
from service.demonstrations import answer_lead, render, split_template, task_block
from service.labeling import ProjectSchema
from service.predictor import Predict, direct_predictor
from service.prompting import task_text
from service.settings import AgentSettings
from service.store.tasks import AnnotatedTask


class StrategyError(PrompterError):
    """A strategy failed for a reason worth recording on a failed proposal."""


@dataclass(frozen=True)
class Mistake:
    task: AnnotatedTask
    control: str
    gold: tuple[str, ...]
    predicted: tuple[str, ...]


@dataclass
class Candidate:
    strategy: str
    text: str
    examples: dict[str, Any] | None
    decision: dict[str, Any] | None = None  # the combiner's weights it decides with (None: the defaults)
    tokens: int = 0  # model tokens spent making the candidate (prompt + completion)
    seconds: float = 0.0
    note: str = ""


@dataclass
class Context:
    engine: Engine
    schema: ProjectSchema
    base_text: str
    base_examples: dict[str, Any] | None
    examples: list[AnnotatedTask]
    mistakes: list[Mistake]
    settings: AgentSettings
    predict: Predict | None = None  # the model path (the service's queue, at batch priority)
    base_decision: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fitted(self, template: str, examples: dict[str, Any] | None) -> dict[str, Any]:
        """The decision record a candidate gets: weights fitted on the examples side, leave-one-out."""
        predict = self.predict or direct_predictor(self.engine)
        return fit_decision(predict, self.engine, self.schema, template, examples, self.examples)

    @property
    def instruction(self) -> str:
        return split_template(self.base_text, self.schema)[0]

    @property
    def base_retrieves(self) -> bool:
        return "{examples}" in self.base_text and bool((self.base_examples or {}).get("pool"))

    @property
    def lead(self) -> str:
        return answer_lead(self.engine)

    def text_of(self, task: AnnotatedTask) -> str:
        to_name = self.schema.choices[0].to_name if self.schema.choices else None
        return task_text(self.schema, task.data, to_name)

    def demo(self, task: AnnotatedTask) -> str:
        return render({"text": self.text_of(task), "labels": task.gold}, self.schema, self.lead)

    def first_label(self, task: AnnotatedTask) -> str | None:
        control = self.schema.choices[0].name if self.schema.choices else None
        labels = task.gold.get(control) if control else None
        return labels[0] if labels else None

    def confused_labels(self) -> Counter:
        """How often each label took part in a mistake (as the answer or as the wrong prediction)."""
        counts: Counter = Counter()
        for m in self.mistakes:
            for label in set(m.gold) ^ set(m.predicted):
                counts[label] += 1
        return counts

    def confused_pairs(self) -> Counter:
        """(gold, predicted) label pairs of single-label mistakes, unordered, with counts."""
        pairs: Counter = Counter()
        for m in self.mistakes:
            for g in set(m.gold) - set(m.predicted):
                for p in set(m.predicted) - set(m.gold):
                    pairs[tuple(sorted((g, p)))] += 1
        return pairs

    def central(self, tasks: list[AnnotatedTask], n: int, avoid: list[np.ndarray] = ()) -> list[AnnotatedTask]:
        """Up to ``n`` typical tasks (closest to the group's mean), skipping near-duplicates (cosine > 0.9)."""
        if not tasks:
            return []
        vecs = embeddings.embed([self.text_of(t) for t in tasks])
        centre = vecs.mean(axis=0)
        chosen, kept = [], list(avoid)
        for i in np.argsort(-(vecs @ centre), kind="stable"):
            if any(float(vecs[i] @ v) > 0.9 for v in kept):
                continue
            chosen.append(tasks[i])
            kept.append(vecs[i])
            if len(chosen) >= n:
                break
        return chosen

    def task_block(self) -> str:
        return task_block(self.schema)


Strategy = Callable[[Context], Candidate | None]
