"""Rating, Number and Taxonomy beside Labels and Choices: every control decided in one call, values in range."""

from __future__ import annotations

import pytest

from service.labeling import ConfigError, parse_config
from service.predictor import Prompt, label_tasks
from service.prompting import build_query, default_prompt

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="intent" toName="text" choice="single" required="true">
    <Choice value="book"/><Choice value="cancel"/>
  </Choices>
  <Labels name="slots" toName="text"><Label value="date"/><Label value="person"/></Labels>
  <Rating name="urgency" toName="text" maxRating="4"/>
  <Number name="nights" toName="text" min="1" max="30"/>
  <Taxonomy name="topic" toName="text">
    <Choice value="Rooms"><Choice value="Booking"/><Choice value="Cancellation"/></Choice>
    <Choice value="Food"><Choice value="Room service"/></Choice>
  </Taxonomy>
</View>"""


def test_values_are_parsed_as_choices_among_their_possible_values() -> None:
    schema = parse_config(CONFIG)
    by_name = {c.name: c for c in schema.values}
    assert by_name["urgency"].label_set.names == ("1", "2", "3", "4")
    assert by_name["nights"].values == tuple(range(1, 31))
    topic = by_name["topic"]
    assert topic.label_set.names == ("Rooms", "Rooms > Booking", "Rooms > Cancellation", "Food", "Food > Room service")
    assert topic.values[1] == [["Rooms", "Booking"]]
    query = build_query(default_prompt(schema), schema, {"text": "x"}, by_name["nights"])
    assert "a whole number from 1 to 30" in query.text and "29" not in query.text  # no list of 30 numbers


@pytest.mark.parametrize(
    ("control", "message"),
    [
        ('<Number name="n" toName="text"/>', "min and max"),
        ('<Number name="n" toName="text" min="0" max="5000"/>', "min and max"),
        ('<Rating name="r" toName="text" maxRating="many"/>', "maxRating='many' is not a number"),
    ],
)
def test_values_prompter_cannot_fill_are_named(control: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f'<View><Text name="text" value="$text"/>{control}</View>')


def test_every_control_is_decided_in_one_call(tiny_engine) -> None:
    schema = parse_config(CONFIG)
    tasks = [{"id": 1, "data": {"text": "cancel my 3 nights from Friday, urgent!"}}, {"id": 2, "data": {"text": "hi"}}]
    for pred in label_tasks(tiny_engine, schema, tasks, Prompt(default_prompt(schema))):
        by_type: dict[str, list[dict]] = {}
        for region in pred.result:
            by_type.setdefault(region["type"], []).append(region)
        assert len(by_type["choices"]) == len(by_type["rating"]) == len(by_type["number"]) == 1
        assert 1 <= by_type["rating"][0]["value"]["rating"] <= 4
        assert 1 <= by_type["number"][0]["value"]["number"] <= 30
        [path] = by_type["taxonomy"][0]["value"]["taxonomy"]
        assert path[0] in {"Rooms", "Food"} and (
            len(path) == 1 or path[1] in {"Booking", "Cancellation", "Room service"}
        )
        for name in ("urgency", "nights", "topic"):
            assert sum(pred.probs[name].values()) == pytest.approx(1.0)
            assert pred.probs[name][pred.labels[name][0]] == pytest.approx(max(pred.probs[name].values()))
        assert 0 < pred.score <= 1
