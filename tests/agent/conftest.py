"""Agent fixtures: a project with annotated tasks in the real store, and a deterministic stub engine."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
from sqlmodel import Session

from agent.corrections import record_corrections
from constraints.base import Decision, Query
from constraints.labelset import LabelSet
from service.labeling import ProjectSchema, parse_config
from service.settings import AgentSettings
from service.store import repo
from service.store.models import AnnotationCreate

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="intent" toName="text">
    <Choice value="loan"/>
    <Choice value="card" hint="a debit card: lost, stolen, blocked or not arrived"/>
    <Choice value="credit card"/>
  </Choices>
</View>"""

TEXTS = {
    "loan": [
        "I want to borrow money for a house",
        "can I get a mortgage for my new flat",
        "how much would a personal loan cost me",
        "what is the interest on a car loan",
        "I need financing to buy a home",
        "apply for a loan of five thousand",
        "can you lend me money for my studies",
        "refinance my mortgage please",
        "how long do I have to repay the loan",
        "is there a loan for small businesses",
    ],
    "card": [
        "my debit card was stolen yesterday",
        "I lost my bank card",
        "the new debit card has not arrived",
        "my card got blocked at the ATM",
        "the cash machine swallowed my card",
        "please freeze my debit card",
        "where is my replacement card",
        "my card is damaged and does not work",
        "someone took my wallet with my card",
        "the card reader rejects my debit card",
    ],
    "credit card": [
        "raise my credit card limit",
        "what is the APR on the credit card",
        "I want to apply for a credit card",
        "pay off my credit card balance",
        "my credit card statement looks wrong",
        "cashback on the credit card purchases",
        "how do I get a platinum credit card",
        "minimum payment on my credit card",
        "credit card annual fee question",
        "transfer a balance to my credit card",
    ],
}


def labeled() -> list[tuple[str, str]]:
    """(text, label) pairs, labels interleaved so any prefix of the list has every label."""
    rows = []
    for i in range(10):
        for label, texts in TEXTS.items():
            rows.append((texts[i], label))
    return rows


class CopyEngine:
    """Answers the label of the last demonstration in the prompt (the first label when there is none):
    a stand-in for a model that follows demonstrations, so retrieval of similar examples helps."""

    name = "stub"
    model_id = "stub-copy"
    lead = "\n"

    def __init__(self) -> None:
        self.calls = 0

    def decide(self, queries: list[Query], label_set: LabelSet) -> list[Decision]:
        self.calls += 1
        out = []
        for q in queries:
            found = re.findall(re.escape(q.cue) + r"\n([^\n]+)\n", q.prefix + q.body)
            name = found[-1] if found and found[-1] in label_set.names else label_set.names[0]
            label = label_set.label_of(name)
            probs = {x: (1.0 if x == label else 0.0) for x in label_set.labels}
            out.append(Decision((label,), 1.0, probs))
        return out

    def label_logprobs(self, queries: list[Query], label_set: LabelSet) -> np.ndarray:
        """Log-probabilities of ``decide``'s answer: all mass on the copied label."""
        return np.array(
            [[0.0 if x in d.labels else -30.0 for x in label_set.labels] for d in self.decide(queries, label_set)]
        )

    def generate(self, queries: list[Query], max_tokens: int) -> list[str]:
        return ["Classify the request by intent; a debit card problem is card, a credit card question is credit card."]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@pytest.fixture(autouse=True)
def _model_only(model_only_decisions: None) -> None:
    """The loop's mechanics are tested against CopyEngine, whose mistakes the loop must fix."""


@pytest.fixture
def schema() -> ProjectSchema:
    return parse_config(CONFIG)


@pytest.fixture
def stub_engine() -> CopyEngine:
    return CopyEngine()


@pytest.fixture
def cfg() -> AgentSettings:
    return AgentSettings(strategies=["retrieval", "fixed_demos", "definitions"], demos_k=4, validation_fraction=0.5)


Seed = Callable[..., list[int]]


@pytest.fixture
def seed(session: Session, schema: ProjectSchema) -> Seed:
    """Annotate the first ``n`` labeled texts in project ``project`` (task ids from 1, annotation ids from 1001)."""

    def run(engine, n: int = 30, project: str = "1", record: bool = True, start: int = 0) -> list[int]:
        repo.upsert_project(session, project, CONFIG)
        ids = []
        for i, (text, label) in enumerate(labeled()[start : start + n], start=start + 1):
            annotation = repo.upsert_annotation(
                session, AnnotationCreate(id=1000 + i, project_id=project, task_id=i, choices={"intent": [label]})
            )
            task = {"id": i, "data": {"text": text}}
            if record:
                record_corrections(session, engine, schema, project, annotation, task=task)
            else:
                from service.store.tasks import remember_tasks

                remember_tasks(session, project, [task])
            ids.append(annotation.id)
        return ids

    return run
