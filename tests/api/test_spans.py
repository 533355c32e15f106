"""Labels (spans) through /setup and /predict: several controls in one request, bad configs named, Shift+Enter."""

from __future__ import annotations

from fastapi.testclient import TestClient

SPANS_AND_CHOICES = """<View>
  <Text name="text" value="$text"/>
  <TextArea name="prompt" toName="text" rows="2" editable="true" maxSubmissions="1"/>
  <Labels name="slots" toName="text">
    <Label value="date"/><Label value="person_name"/><Label value="adults"/>
  </Labels>
  <Choices name="intent" toName="text" choice="single" required="true">
    <Choice value="book"/><Choice value="cancel"/>
  </Choices>
</View>"""

LABELS_ON_IMAGE = """<View>
  <Text name="text" value="$text"/>
  <Image name="photo" value="$image"/>
  <Choices name="intent" toName="text"><Choice value="a"/></Choices>
  <Labels name="objects" toName="photo"><Label value="cat"/></Labels>
</View>"""

TEXTS = ["book a room for 2 adults from 🐱 Friday, name Zoë Smith", "Cancel it & thanks!", "?!"]


def _setup(client: TestClient, ls: dict, schema: str, project: str = "7.1700000000"):
    return client.post("/setup", json=ls["setup"] | {"project": project, "schema": schema})


def test_labels_on_an_unsupported_object_is_a_422_naming_the_tag(client: TestClient, ls: dict) -> None:
    response = _setup(client, ls, LABELS_ON_IMAGE)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "<Labels name='objects'>" in detail and "<Image name='photo'>" in detail and "Text" in detail


def test_spans_and_choices_are_decided_in_one_request(client: TestClient, ls: dict) -> None:
    assert _setup(client, ls, SPANS_AND_CHOICES).status_code == 200
    tasks = [{"id": 100 + i, "data": {"text": t}} for i, t in enumerate(TEXTS)]
    body = {"tasks": tasks, "project": "7.1700000000", "label_config": SPANS_AND_CHOICES, "params": {}}
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == len(TEXTS)
    for text, result in zip(TEXTS, results, strict=True):
        assert 0 < result["score"] <= 1
        kinds = [r["type"] for r in result["result"]]
        assert kinds.count("choices") == 1
        spans = [r for r in result["result"] if r["type"] == "labels"]
        seen = set()
        for region in spans:
            v = region["value"]
            assert region["from_name"] == "slots" and region["to_name"] == "text"
            assert text[v["start"] : v["end"]] == v["text"] and v["labels"][0] in {"date", "person_name", "adults"}
            assert (v["start"], v["end"]) not in seen and 0 < region["score"] <= 1
            seen.add((v["start"], v["end"]))
        if text == "?!":
            assert spans == []  # nothing a span could be: no region invented


def test_shift_enter_fills_spans_with_the_typed_prompt(client: TestClient, ls: dict) -> None:
    assert _setup(client, ls, SPANS_AND_CHOICES).status_code == 200
    context = {
        "result": [
            {"from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": ["Tag dates and names."]}}
        ]
    }
    body = {
        "tasks": [{"id": 200, "data": {"text": TEXTS[0]}}],
        "project": "7.1700000000",
        "label_config": SPANS_AND_CHOICES,
        "params": {"context": context},
    }
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    (result,) = response.json()["results"]
    by_name = {}
    for region in result["result"]:
        by_name.setdefault(region["from_name"], []).append(region)
    assert by_name["prompt"][0]["value"]["text"] == ["Tag dates and names."]
    assert len(by_name["intent"]) == 1
    for region in by_name.get("slots", []):
        assert TEXTS[0][region["value"]["start"] : region["value"]["end"]] == region["value"]["text"]
