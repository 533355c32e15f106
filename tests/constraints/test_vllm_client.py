"""The vLLM engine without a vLLM server: a fake /v1/completions backed by the tiny model pins the scoring
(same numbers as the local engine's trie scorer), the request shapes, and the mapping of server failures."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from constraints.base import EngineUnavailable, Query
from constraints.labelset import LabelSet
from constraints.local import LocalEngine
from constraints.vllm import MAX_TOKEN_IDS, VLLMEngine, VLLMRequestError
from tests.tiny_model import tiny_model

LABELS = LabelSet(("credit card", "credit", "card", "débit carte", "loan"))
QUERIES = [
    Query("Classify the customer's request.\nOptions: credit card, credit, card, débit carte, loan\n\n", body, "Label:")
    for body in ("Text:\ncancel my credit card\n", "Text:\ncan I borrow money for a house?\n", "Text:\nü?\n")
]


class FakeVLLM:
    """/v1/completions as vLLM answers it, with the tiny model's raw log-probabilities (max_tokens=1)."""

    def __init__(self, model) -> None:
        self.model = model
        self.requests: list[dict] = []

    def next_logprobs(self, ids: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        return torch.log_softmax(logits, dim=-1)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        assert request.url.path == "/v1/completions"
        assert body["max_tokens"] == 1 and body["temperature"] == 0.0
        ids = body["logprob_token_ids"]
        assert len(ids) <= MAX_TOKEN_IDS and body["logprobs"] == len(ids)
        choices = []
        for index, prompt in enumerate(body["prompt"]):
            logp = self.next_logprobs(prompt)
            sampled = int(logp.argmax())
            top = {f"token_id:{t}": float(logp[t]) for t in [sampled, *ids]}
            choices.append({"index": index, "text": "x", "logprobs": {"top_logprobs": [top]}})
        return httpx.Response(200, json={"choices": choices[::-1]})  # any order: the engine sorts by index


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


def vllm_engine(tokenizer, handler, **kwargs) -> VLLMEngine:
    return VLLMEngine("http://vllm.test", tokenizer, "tiny", transport=httpx.MockTransport(handler), **kwargs)


def test_scores_equal_the_local_engine_trie_scores(tiny) -> None:
    model, tokenizer = tiny
    local = LocalEngine(model, tokenizer, "tiny")
    fake = FakeVLLM(model)
    remote = vllm_engine(tokenizer, fake, batch_size=2)
    for q in QUERIES:
        assert remote.prompt_ids(q) == local.prefix_ids(q) + local.body_ids(q)
    expected = local.label_logprobs(QUERIES, LABELS)
    got = remote.label_logprobs(QUERIES, LABELS)
    assert torch.allclose(got, expected, atol=1e-4), (got, expected)
    assert torch.allclose(got.exp().sum(dim=1), torch.ones(len(QUERIES)), atol=1e-5)
    compiled = remote.compile(LABELS)
    # every branch point in one request per chunk of two queries: one completion per query and branch point
    assert [p.branches for p in compiled.probes] == [(0, 1, 2)]
    assert sorted(len(r["prompt"]) for r in fake.requests) == [1 * 3, 2 * 3]  # chunks sent concurrently
    assert set(fake.requests[0]["logprob_token_ids"]) == {t for b in compiled.branches for t in b.token_ids}
    decisions = remote.decide(QUERIES, LABELS)
    reference = local.decide(QUERIES, LABELS)
    assert [d.labels for d in decisions] == [d.labels for d in reference]
    for d in decisions:
        assert set(d.probs) == set(LABELS.labels) and abs(sum(d.probs.values()) - 1) < 1e-5


def test_branch_points_with_many_children_are_split_into_requests_of_128(tiny) -> None:
    model, tokenizer = tiny
    fake = FakeVLLM(model)
    remote = vllm_engine(tokenizer, fake)
    vocab = [tokenizer.decode([i]) for i in range(3, len(tokenizer))]
    names = sorted({v for v in vocab if v.strip() and "\n" not in v and len(tokenizer.encode("\n" + v)) == 2})
    assert len(names) > MAX_TOKEN_IDS
    labels = LabelSet(tuple(names))
    logp = remote.label_logprobs(QUERIES[:1], labels)
    assert torch.allclose(logp.exp().sum(), torch.tensor(1.0), atol=1e-5)
    assert max(len(r["logprob_token_ids"]) for r in fake.requests) == MAX_TOKEN_IDS
    local = LocalEngine(model, tokenizer, "tiny")
    assert torch.allclose(logp, local.label_logprobs(QUERIES[:1], labels), atol=1e-4)


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (httpx.ConnectError("connection refused"), "is unreachable: ConnectError: connection refused"),
        (httpx.ReadTimeout("timed out"), "did not answer within 60 s"),
        (httpx.RemoteProtocolError("peer closed connection"), "is unreachable: RemoteProtocolError"),
    ],
)
def test_transport_failures_raise_engine_unavailable(tiny, failure: Exception, message: str) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise failure

    engine = vllm_engine(tiny[1], handler)
    with pytest.raises(EngineUnavailable, match="the vLLM server at http://vllm.test") as info:
        engine.decide(QUERIES[:1], LABELS)
    assert message in str(info.value)
    assert len(calls) == (1 if isinstance(failure, httpx.TimeoutException) else 2)  # one fresh retry


def test_a_failed_connection_is_retried_once_with_a_fresh_one(tiny) -> None:
    model, tokenizer = tiny
    fake = FakeVLLM(model)
    failures = [httpx.RemoteProtocolError("server restarted")]

    def handler(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop()
        return fake(request)

    decisions = vllm_engine(tokenizer, handler).decide(QUERIES[:1], LABELS)
    assert decisions[0].labels[0] in LABELS.labels


def test_server_errors_are_unavailable_and_refusals_are_request_errors(tiny) -> None:
    def answer(status: int, body: dict):
        return lambda request: httpx.Response(status, json=body)

    down = vllm_engine(tiny[1], answer(500, {"error": {"message": "EngineCore died"}}))
    with pytest.raises(EngineUnavailable, match="failed: 500 EngineCore died"):
        down.decide(QUERIES[:1], LABELS)
    refused = vllm_engine(tiny[1], answer(400, {"error": {"message": "prompt is longer than max_model_len"}}))
    with pytest.raises(VLLMRequestError, match="400 prompt is longer than max_model_len"):
        refused.generate(QUERIES[:1], 4)


def test_generate_and_choice_requests(tiny) -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        text = "credit card" if "choice" in body["structured_outputs"] else "  a line of text " + "x" * 500
        return httpx.Response(200, json={"choices": [{"index": i, "text": text} for i in range(len(body["prompt"]))]})

    engine = vllm_engine(tiny[1], handler)
    out = engine.generate(QUERIES[:2], 8)
    assert len(out) == 2 and out[0].startswith("a line of text") and len(out[0]) == 400
    assert seen[-1]["structured_outputs"] == {"regex": "[^\\n]+"} and seen[-1]["max_tokens"] == 8
    assert engine.generate(QUERIES[:2], 0) == ["", ""] and len(seen) == 1
    assert engine.label_by_choice(QUERIES[:2], LABELS) == [("credit card",), ("credit card",)]
    assert seen[-1]["structured_outputs"] == {"choice": list(LABELS.names)}
    assert all(p[-1] == engine.encode("\n")[0] for p in seen[-1]["prompt"])  # the answer lead, as in the local engine


def test_engine_registry_builds_the_named_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from constraints import engines
    from service.settings import Settings

    built = []
    monkeypatch.setitem(engines.ENGINES, "vllm", "tests.constraints.test_vllm_client:_fake_loader")
    globals()["_fake_loader"] = lambda s: built.append(s.engine) or "engine"
    assert engines.load_engine(Settings(engine="vllm")) == "engine" and built == ["vllm"]
    with pytest.raises(ValueError, match="unknown engine"):
        engines.load_engine(Settings.model_construct(engine="tgi"))


def test_at_start_the_engine_waits_for_a_server_still_loading_then_gives_up(tiny) -> None:
    answers = [httpx.ConnectError("refused"), httpx.Response(503), httpx.Response(200, json={"data": [{"id": "tiny"}]})]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    engine = vllm_engine(tiny[1], handler)
    assert engine.wait_for_server(30, poll_s=0.01) == {"id": "tiny"}
    with pytest.raises(EngineUnavailable, match=r"is unreachable: ConnectError: refused \(waited 0.05 s\)"):
        vllm_engine(tiny[1], lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused"))).wait_for_server(0.05, 0.01)
    other = vllm_engine(tiny[1], lambda r: httpx.Response(200, json={"data": [{"id": "llama"}]}))
    with pytest.raises(VLLMRequestError, match=r"serves \['llama'\], not 'tiny'"):
        other.wait_for_server(30)
