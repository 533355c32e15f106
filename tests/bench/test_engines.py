"""The engine comparison of the benchmark on the tiny model: the local engine and the vLLM engine (over a fake
server backed by the same model) on the same prompts give the same labels; the report has every figure."""

from __future__ import annotations

import httpx

from constraints.local import LocalEngine
from constraints.vllm import VLLMEngine
from service.bench.engines import markdown, run_compare
from service.bench.outlines import LabeledSet
from tests.constraints.test_vllm_client import FakeVLLM
from tests.tiny_model import tiny_model


def test_compare_engines_on_the_same_prompts() -> None:
    model, tokenizer = tiny_model()
    engines = {
        "local": LocalEngine(model, tokenizer, "tiny", batch_size=2),
        "vllm": VLLMEngine(
            "http://vllm.test", tokenizer, "tiny", batch_size=2, transport=httpx.MockTransport(FakeVLLM(model))
        ),
    }
    texts = ("cancel my credit card", "a loan for a house", "debit card lost", "hello")
    data = LabeledSet(
        "tiny-set", texts, ("credit card", "loan", "debit card", "loan"), ("credit card", "debit card", "loan")
    )
    report = run_compare(engines, [data], interactive=2, vllm_url=None)
    s = report["sets"]["tiny-set"]
    assert s["tasks"] == 4 and s["interactive_tasks"] == 2 and s["labels"] == 3
    assert s["top1_agreement"] == 1.0  # same model, same tokens, same scoring
    assert s["accuracy"]["local"] == s["accuracy"]["vllm"]
    for key in ("interactive_p50_s", "interactive_p95_s", "batch_tasks_per_s", "first_request_s"):
        assert set(s[key]) == {"local", "vllm"} and all(v > 0 for v in s[key].values())
    report.update(local="tiny in float32", vllm="fake server")
    text = markdown(report)
    assert "| vllm: interactive p50 / p95 (s) |" in text and "| top-1 agreement local vs vLLM | 1.000 |" in text
