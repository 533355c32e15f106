"""Labeling configs -> what Prompter fills, and prompts -> model queries."""

from __future__ import annotations

import pytest

from service.labeling import ConfigError, parse_config
from service.prompting import build_query, default_prompt, render_value

CHAT = """<View>
  <Paragraphs name="chat" value="$dialogue" layout="dialogue" nameKey="author" textKey="text"/>
  <TextArea name="prompt" toName="chat" rows="4" editable="true" maxSubmissions="1"/>
  <TextArea name="response" toName="chat" rows="4" editable="true" maxSubmissions="1"/>
  <Choices name="intent" toName="chat" choice="multiple">
    <Choice value="Apply Loan" hint="asks to borrow money"/>
    <Choice value="Check Balance" alias="balance"/>
    <Choice value="Report Fraud 🚨"/>
  </Choices>
</View>"""

TEXT_UPPER = """<View>
  <Text name="Text" value="$Text"/>
  <Choices name="Sentiment" toName="Text" choice="single" required="true">
    <Choice value="Positive"/><Choice value="Negative"/>
  </Choices>
</View>"""

DIALOGUE = [{"author": "customer", "text": "Hi, I need a loan for a car."}, {"author": "agent", "text": "Sure."}]


def test_prompt_centric_config() -> None:
    schema = parse_config(CHAT)
    assert [o.name for o in schema.objects] == ["chat"] and schema.objects[0].tag == "paragraphs"
    assert schema.prompt and schema.prompt.name == "prompt"
    assert schema.response and schema.response.name == "response"
    (intent,) = schema.choices
    assert intent.label_set.multiple and intent.label_set.allow_empty
    assert intent.label_set.labels == ("Apply Loan", "balance", "Report Fraud 🚨")
    assert intent.label_set.names == ("Apply Loan", "Check Balance", "Report Fraud 🚨")
    assert intent.label_set.hints[0] == "asks to borrow money"


def test_tag_names_keep_their_case() -> None:
    schema = parse_config(TEXT_UPPER)
    assert schema.objects[0].name == "Text" and schema.objects[0].value_key == "Text"
    assert schema.choices[0].name == "Sentiment" and schema.choices[0].to_name == "Text"
    assert not schema.choices[0].label_set.multiple
    assert schema.prompt is None and schema.response is None


@pytest.mark.parametrize(
    "xml, reason",
    [
        ("", "empty"),
        ("<View><Text name='t' value='$t'/>", "not valid XML"),
        (
            "<View><Image name='i' value='$img'/><Choices name='c' toName='i'><Choice value='a'/></Choices></View>",
            "no Text",
        ),
        ("<View><Text name='t' value='$t'/></View>", "no Choices"),
        ("<View><Text name='t' value='$t'/><TextArea name='prompt' toName='t'/></View>", "no Choices"),
    ],
)
def test_configs_with_nothing_to_do_are_refused(xml: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_config(xml)


def test_prompt_prefix_is_configurable() -> None:
    xml = CHAT.replace('name="prompt"', 'name="instructions"')
    assert parse_config(xml).prompt is None
    assert parse_config(xml, prompt_prefix="instr").prompt.name == "instructions"


def test_dialogue_renders_as_author_lines() -> None:
    obj = parse_config(CHAT).objects[0]
    assert render_value(obj, DIALOGUE) == "customer: Hi, I need a loan for a car.\nagent: Sure."


def test_template_variables_braces_and_prefix_split() -> None:
    schema = parse_config(CHAT)
    control = schema.choices[0]
    template = 'Label this chat. JSON like {"a": 1} is fine, {unknown} stays.\nChat:\n{dialogue}\nLabels: {labels}'
    q = build_query(template, schema, {"dialogue": DIALOGUE}, control)
    assert q.prefix.startswith('Label this chat. JSON like {"a": 1} is fine, {unknown} stays.\n')
    assert "customer: Hi, I need a loan" not in q.prefix  # task text never in the shared prefix
    assert "customer: Hi, I need a loan for a car." in q.body
    assert "Labels: Apply Loan, Check Balance, Report Fraud 🚨" in q.body
    assert "Options:" not in q.prefix  # labels already named by {labels}
    assert q.cue == "Intent:"


def test_prompt_without_variables_gets_the_task_and_the_options() -> None:
    schema = parse_config(CHAT)
    q = build_query("Classify the intent", schema, {"dialogue": DIALOGUE}, schema.choices[0])
    assert q.prefix == "Classify the intent\nOptions: Apply Loan, Check Balance, Report Fraud 🚨\n\n"
    assert q.body == "Chat:\ncustomer: Hi, I need a loan for a car.\nagent: Sure.\n"
    same_prefix = build_query("Classify the intent", schema, {"dialogue": DIALOGUE[:1]}, schema.choices[0])
    assert same_prefix.prefix == q.prefix


def test_examples_variable_is_task_dependent() -> None:
    schema = parse_config(TEXT_UPPER)
    q = build_query("Examples:\n{examples}\nNow:\n{Text}", schema, {"Text": "great"}, schema.choices[0], examples="X")
    assert q.prefix == "Examples:\nOptions: Positive, Negative\n"
    assert "X" in q.body and "great" in q.body


def test_default_prompt_names_every_label() -> None:
    schema = parse_config(CHAT)
    text = default_prompt(schema)
    assert all(name in text for name in schema.choices[0].label_set.names)
    assert "every label that applies" in text
