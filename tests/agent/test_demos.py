"""Demonstrations: the pattern the engine answers in, sections the agent rewrites, retrieval by similarity."""

from __future__ import annotations

from service.demonstrations import (
    DEFINITIONS,
    EXAMPLES,
    compose,
    examples_for,
    render,
    retrieve,
    split_sections,
    split_template,
)
from service.prompting import build_query


def test_render_matches_the_query_the_engine_scores(schema) -> None:
    demo = render({"text": "I lost my card", "labels": {"intent": ["card"]}}, schema, "\n")
    assert demo == "Text:\nI lost my card\nIntent:\ncard\n\n"
    template = compose("Pick the intent.", schema, retrieval=True)
    assert template == "Pick the intent.\n\n{examples}Text:\n{text}\n"
    query = build_query(template, schema, {"text": "my card is gone"}, schema.choices[0], examples=demo)
    assert query.prefix.startswith("Pick the intent.\n\n")  # the instruction is the cached prefix
    assert query.body == demo + "Text:\nmy card is gone\n" and query.cue == "Intent:"


def test_sections_are_replaced_not_stacked(schema) -> None:
    first = compose(
        "Pick the intent.", schema, {DEFINITIONS: "- card: a debit card", EXAMPLES: "Text:\nx\nIntent:\ncard\n\n"}
    )
    instruction, task = split_template(first, schema)
    assert task == "Text:\n{text}\n"
    core, sections = split_sections(instruction)
    assert core == "Pick the intent." and sections[DEFINITIONS] == "- card: a debit card"
    assert sections[EXAMPLES] == "Text:\nx\nIntent:\ncard"
    sections[DEFINITIONS] = "- loan: borrowing money"
    second = compose(core, schema, sections)
    assert second.count(DEFINITIONS) == 1 and "debit" not in second and second.count(EXAMPLES) == 1
    assert split_template("Classify the text.", schema) == ("Classify the text.", "")
    assert split_template(compose("Go.", schema, retrieval=True), schema) == ("Go.", "{examples}Text:\n{text}\n")
    assert split_template("Label this:\nMessage: {text}\nAnswer.", schema) == (
        "Label this:",
        "Message: {text}\nAnswer.",
    )


def test_retrieval_puts_the_most_similar_last_and_honours_exclusions(schema) -> None:
    pool = [
        {"task_id": 1, "text": "how much does a mortgage cost", "labels": {"intent": ["loan"]}},
        {"task_id": 2, "text": "my debit card was stolen", "labels": {"intent": ["card"]}},
        {"task_id": 3, "text": "raise my credit card limit", "labels": {"intent": ["credit card"]}},
    ]
    [order] = retrieve(pool, ["someone stole my debit card"], k=2)
    assert order[-1] == 1  # index of task 2
    [order] = retrieve(pool, ["someone stole my debit card"], k=3, exclude={2})
    assert 1 not in order and len(order) == 2
    texts = ["someone stole my debit card", "my debit card was stolen"]  # the second is pool task 2 itself
    first, second = retrieve(pool, texts, k=3, own=[None, 2])
    assert first[-1] == 1 and len(first) == 3  # another text may retrieve task 2
    assert 1 not in second and len(second) == 2  # but not task 2 itself
    shots = examples_for({"pool": pool, "k": 1}, schema, [{"text": "a loan for my house"}], "\n")
    assert shots == ["Text:\nhow much does a mortgage cost\nIntent:\nloan\n\n"]
    assert examples_for(None, schema, [{"text": "x"}], "\n") is None
