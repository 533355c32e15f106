"""Issue 13: a /predict's cost is known before model work; long texts are cut, too much work is refused at once."""

from __future__ import annotations

import copy
import time

import pytest
from fastapi.testclient import TestClient

from service import budget
from service.labeling import parse_config
from service.settings import settings
from tests.served import LABEL_CONFIG, LABELS

WORDS = "customer wants to cancel the credit card and borrow money for a house please "


def _tasks(n: int, chars: int) -> list[dict]:
    text = (WORDS * (chars // len(WORDS) + 1))[:chars]
    return [{"id": i + 1, "data": {"text": f"{i}: {text}"}} for i in range(n)]


def _body(tasks: list[dict], context: bool = False) -> dict:
    params = {"context": {"result": [{"from_name": "prompt", "to_name": "text", "type": "textarea",
                                      "value": {"text": ["Classify it."]}}]}} if context else {}  # fmt: skip
    return {"tasks": tasks, "project": "7.1700000000", "label_config": LABEL_CONFIG, "params": params}


def test_a_long_text_keeps_its_head_and_tail_within_the_budget(tiny_engine) -> None:
    text = "start " + "middle " * 400 + "the end"
    cut, tokens = budget.cut_text(tiny_engine, text, 64)
    assert tokens == tiny_engine.count_tokens(text) > 64
    assert cut.startswith("start ") and cut.endswith("the end") and budget.CUT_MARK in cut
    assert tiny_engine.count_tokens(cut) <= 64 + tiny_engine.count_tokens(budget.CUT_MARK) + 2
    short = "a short text"
    assert budget.cut_text(tiny_engine, short, 64) == (short, tiny_engine.count_tokens(short))


def test_cut_tasks_copies_only_the_long_ones(tiny_engine) -> None:
    schema = parse_config(LABEL_CONFIG, "prompt", None)
    tasks = _tasks(1, 40) + _tasks(1, 3000)
    original = copy.deepcopy(tasks)
    model_tasks, cuts, tokens = budget.cut_tasks(tiny_engine, schema, tasks, 128)
    assert tasks == original  # what is stored for the agent is the task as Label Studio sent it
    assert model_tasks[0] is tasks[0] and cuts[0] == [] and tokens[0] < 128
    assert cuts[1] == [budget.Cut("text", tiny_engine.count_tokens(tasks[1]["data"]["text"]), 128)]
    assert tokens[1] == 128 and budget.CUT_MARK in model_tasks[1]["data"]["text"]


def test_one_task_is_never_refused_however_slow_the_model(tiny_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = parse_config(LABEL_CONFIG, "prompt", None)
    monkeypatch.setattr(settings, "predict_timeout_s", 0.001)
    one = budget.Estimate(1, 10_000, 1.0, settings.predict_timeout_s)
    assert not one.too_long
    many = budget.Estimate(30, budget.cost_tokens(schema, [3000] * 30, False, 0), 700.0, 100.0)
    assert many.too_long and "prompter label --project 7" in many.detail("7.1700000000")
    assert many.tokens == 30 * 3000 + 30 * (2 * len(LABELS) + budget.TASK_OVERHEAD_TOKENS)
    assert "at most about 23 of these tasks" in many.detail("7")  # 30 x 100 s / 129.5 s


def test_a_long_task_is_cut_and_the_prediction_says_so(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "task_tokens", 96)
    response = client.post("/predict", json=_body(_tasks(1, 5000) + _tasks(1, 50)))
    assert response.status_code == 200, response.text
    long, short = response.json()["results"]
    choices = next(r for r in long["result"] if r["type"] == "choices")
    assert choices["value"]["choices"][0] in LABELS
    note = choices["meta"]["text"][0]
    assert "'text' cut for the model from" in note and "to 96 tokens" in note
    assert all("meta" not in r for r in short["result"])


def test_too_much_work_is_refused_at_once_naming_prompter_label(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "prefill_tokens_per_s", 50.0)  # a slow model: 30 long tasks take minutes
    monkeypatch.setattr(budget, "_rates", {})
    started = time.perf_counter()
    response = client.post("/predict", json=_body(_tasks(30, 15_000)))
    assert time.perf_counter() - started < 5
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "prompter label --project 7" in detail and "100 s" in detail and "PROMPTER_PREDICT_TIMEOUT_S" in detail
    # the same single task, interactive (Shift+Enter), is answered
    response = client.post("/predict", json=_body(_tasks(1, 15_000), context=True))
    assert response.status_code == 200, response.text


def test_the_rate_follows_measured_batches(tiny_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "_rates", {})
    monkeypatch.setattr(settings, "prefill_tokens_per_s", None)
    rate = budget.prefill_rate(tiny_engine)
    assert rate.value == budget.CPU_TOKENS_PER_S
    rate.observe(1000, 1.0)
    assert budget.CPU_TOKENS_PER_S < rate.value < 1000
    monkeypatch.setattr(settings, "task_tokens", None)
    assert budget.task_token_budget(tiny_engine) == 256  # the tiny model's 1,024-token context less the reserve: floor
    monkeypatch.setattr(budget, "context_tokens", lambda _: 32_768)  # the embedded model's
    assert budget.task_token_budget(tiny_engine) == int(budget.CPU_TOKENS_PER_S * budget.TASK_SECONDS)  # not live
