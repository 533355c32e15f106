"""Label knowledge is part of the prompt: a label's name, hint and definition describe it, a definition in the
prompt changes decisions, and a definitions section Prompter cannot use is a clear 422 with nothing stored."""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from service.knowledge import DefinitionError, definitions, descriptions
from service.labeling import parse_config
from service.predictor import Prompt, label_tasks
from service.store import db, repo

CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="intent" toName="text" choice="single">
  <Choice value="ApplyLoan" hint="asks to borrow money"/><Choice value="CardArrival"/><Choice value="credit_limit"/>
</Choices></View>"""
BASE = "Classify the customer's request by intent."


def with_definitions(*lines: str) -> str:
    return BASE + "\n\nLabel definitions:\n" + "\n".join(lines)


def test_a_label_is_described_by_its_name_hint_and_definition() -> None:
    schema = parse_config(CONFIG)
    control = schema.choices[0]
    assert descriptions(BASE, schema, control) == ["apply loan: asks to borrow money", "card arrival", "credit limit"]
    text = with_definitions("- CardArrival: the customer waits for a new card", "Do not confuse loans and cards.")
    assert definitions(text, schema, control) == {"CardArrival": "the customer waits for a new card"}
    assert descriptions(text, schema, control)[1] == "card arrival: the customer waits for a new card"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("- Mortgage: a loan for a house", "'Mortgage', which is not a label"),
        ("- CardArrival:", "definition of 'CardArrival' is empty"),
    ],
)
def test_unusable_definitions_are_errors_naming_the_label(line: str, says: str) -> None:
    schema = parse_config(CONFIG)
    with pytest.raises(DefinitionError, match=says):
        definitions(with_definitions(line), schema, schema.choices[0])
    twice = with_definitions("- ApplyLoan: borrowing", "- ApplyLoan: a loan")
    with pytest.raises(DefinitionError, match="defines 'ApplyLoan' twice"):
        definitions(twice, schema, schema.choices[0])


def test_editing_a_definition_changes_the_decision(tiny_engine) -> None:
    schema = parse_config(CONFIG)
    task = [{"id": 1, "data": {"text": "where is the thing you sent me"}}]
    plain = label_tasks(tiny_engine, schema, task, Prompt(BASE))[0]
    defined = label_tasks(
        tiny_engine, schema, task, Prompt(with_definitions("- CardArrival: where is the thing you sent me"))
    )[0]
    assert defined.probs["intent"]["CardArrival"] > plain.probs["intent"]["CardArrival"]


def test_a_typed_prompt_defining_an_unknown_label_is_refused_and_not_stored(
    client: TestClient, ls: dict, db_url: str
) -> None:
    body = copy.deepcopy(ls["predict_interactive"])
    prompt = "Classify the customer's intent.\n\nLabel definitions:\n- Refund: money back"
    body["params"]["context"]["result"][0]["value"]["text"] = [prompt]
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert "'Refund', which is not a label of <Choices name='intent'>" in response.json()["detail"]
    with Session(db.sql_engine(db_url)) as session:
        assert all(v.text != prompt for v in repo.list_prompt_versions(session, "1"))
