"""The vLLM engine: a vLLM server's OpenAI-compatible ``/v1/completions`` over HTTP, behind the ``Engine`` interface.

Prompts are sent as token ids made by the same tokenizer and the same wrapping as the local engine, so both
engines read exactly the same tokens. A label's probability is scored, not sampled: for every branch point of
the label-set token trie (labels plus the "\\n" terminator, as in the local engine) one ``max_tokens=1``
completion of prompt + path returns the raw log-probabilities of the allowed next tokens
(``logprob_token_ids``), renormalised among them; a label's log-probability is the sum along its path. That is
the distribution constrained sampling draws from, the one the local engine's trie scorer computes.

Why not ``prompt_logprobs`` on prompt+label sequences: vLLM (0.32) skips its prefix cache for every request
that asks for prompt logprobs, so each label would pay a full prefill. Completions read the prefix cache, so
the shared prompt is computed once per query (and the instruction once per batch); branch points are packed
into as few requests as their token ids allow (at most 128 per request).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import torch

from constraints.base import EngineRefused, EngineUnavailable, Query
from constraints.decisions import LabelDecider, sum_paths
from constraints.labelset import LabelSet, LabelSetError
from constraints.tokens import ChatTokens
from constraints.trie import ROOT, ChoiceTrie

log = logging.getLogger(__name__)

MAX_TOKEN_IDS = 128  # vLLM's limit on logprob_token_ids per request
# One non-empty line. The local engine's "[^\n]{1,400}" times out in vLLM's xgrammar compiler (5 s limit):
# the length is bounded by max_tokens, and cut to 400 characters here.
FREE_TEXT_REGEX = r"[^\n]+"
FREE_TEXT_MAX_CHARS = 400


class VLLMRequestError(EngineRefused):
    """The vLLM server refused a request (4xx): a prompt over its context, an unknown model..."""


@dataclass(frozen=True)
class Branch:
    """A trie node with more than one child: the tokens leading to it, and the allowed next tokens."""

    path: tuple[int, ...]  # token ids from the end of the prompt to the node (empty at the root)
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class Probe:
    """One request per chunk of prompts: a completion at each of these branch points, with the
    log-probabilities of these token ids (the union of their allowed tokens, at most MAX_TOKEN_IDS)."""

    branches: tuple[int, ...]
    token_ids: tuple[int, ...]


@dataclass
class Compiled:
    """The token trie of one label set, its branch points and the requests that read them, built once."""

    label_set: LabelSet
    choice: ChoiceTrie
    branches: list[Branch]  # same order as choice.readouts
    probes: list[Probe]  # the requests that read every branch point, sent at once


def plan_probes(branches: list[Branch]) -> list[Probe]:
    """Few requests: branch points packed while the union of their token ids fits in one request."""
    probes: list[Probe] = []
    group: list[int] = []
    union: dict[int, None] = {}
    for b in sorted(range(len(branches)), key=lambda b: len(branches[b].path)):
        ids = branches[b].token_ids
        if len(ids) > MAX_TOKEN_IDS:  # a branch point of its own, its token ids in several requests
            probes += [Probe((b,), ids[s : s + MAX_TOKEN_IDS]) for s in range(0, len(ids), MAX_TOKEN_IDS)]
            continue
        merged = union | dict.fromkeys(ids)
        if len(merged) > MAX_TOKEN_IDS:
            probes.append(Probe(tuple(group), tuple(union)))
            group, merged = [], dict.fromkeys(ids)
        group.append(b)
        union = merged
    if group:
        probes.append(Probe(tuple(group), tuple(union)))
    return probes


class VLLMEngine(ChatTokens, LabelDecider):
    name = "vllm"

    def __init__(
        self,
        url: str,
        tokenizer,
        served_model: str,
        model_id: str | None = None,
        timeout_s: float = 60.0,
        batch_size: int = 16,
        max_concurrency: int = 4,
        multi_label_threshold: float = 0.1,
        calibration: str = "none",
        answer_lead: str = "\n",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.tokenizer = tokenizer
        self.served_model = served_model
        self.model_id = model_id or served_model
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.threshold = multi_label_threshold
        self.calibration = calibration
        self.init_tokens(answer_lead)  # the local engine's wrapping, token for token
        self._compiled: OrderedDict[tuple, Compiled] = OrderedDict()
        self._priors: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_concurrency), thread_name_prefix="vllm-http")
        limits = httpx.Limits(
            max_connections=max(1, max_concurrency), max_keepalive_connections=max(1, max_concurrency)
        )
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            limits=limits,
            transport=transport,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()

    # -- HTTP ---------------------------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the server; EngineUnavailable when it is down, slow or failing, VLLMRequestError on a 4xx."""
        for attempt in (1, 2):
            try:
                response = self._client.post(path, json=body)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                # A pooled connection may have died with a restarted server: one fresh attempt.
                if attempt == 1:
                    continue
                raise EngineUnavailable(f"the vLLM server at {self.url} is unreachable: {_reason(exc)}") from None
            except httpx.TimeoutException as exc:
                raise EngineUnavailable(
                    f"the vLLM server at {self.url} did not answer within {self.timeout_s:g} s ({_reason(exc)})"
                ) from None
            except httpx.TransportError as exc:
                raise EngineUnavailable(f"the vLLM server at {self.url} failed: {_reason(exc)}") from None
            if response.status_code >= 500:
                raise EngineUnavailable(
                    f"the vLLM server at {self.url} failed: {response.status_code} {_detail(response)}"
                )
            if response.status_code >= 400:
                raise VLLMRequestError(f"the vLLM server refused {path}: {response.status_code} {_detail(response)}")
            return response.json()
        raise AssertionError("unreachable")

    def _completions(self, prompts: list[list[int]], **params: Any) -> list[dict[str, Any]]:
        """One /v1/completions request for several token-id prompts; choices in prompt order."""
        body = {"model": self.served_model, "prompt": prompts, "temperature": 0.0, **params}
        out = self._post("/v1/completions", body)
        choices = sorted(out["choices"], key=lambda c: c["index"])
        if len(choices) != len(prompts):
            raise EngineUnavailable(f"the vLLM server answered {len(choices)} choices for {len(prompts)} prompts")
        return choices

    def server_info(self) -> dict[str, Any]:
        """The served model's card from /v1/models (id, max_model_len...)."""
        try:
            response = self._client.get("/v1/models")
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise EngineUnavailable(f"the vLLM server at {self.url} failed: {_detail(exc.response)}") from None
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"the vLLM server at {self.url} is unreachable: {_reason(exc)}") from None
        models = response.json().get("data", [])
        for card in models:
            if card.get("id") == self.served_model:
                return card
        served = [m.get("id") for m in models]
        raise VLLMRequestError(f"the vLLM server at {self.url} serves {served}, not {self.served_model!r}")

    def wait_for_server(self, wait_s: float, poll_s: float = 2.0) -> dict[str, Any]:
        """The served model's card once the server answers (it may still be loading its model at our start);
        EngineUnavailable after ``wait_s`` seconds, VLLMRequestError at once if it serves another model."""
        deadline = time.monotonic() + wait_s
        logged = 0.0
        while True:
            try:
                return self.server_info()
            except EngineUnavailable as exc:
                now = time.monotonic()
                if now >= deadline:
                    raise EngineUnavailable(f"{exc} (waited {wait_s:g} s)") from None
                if now - logged >= 30:
                    log.info("waiting for the vLLM server: %s", exc)
                    logged = now
                time.sleep(min(poll_s, max(0.0, deadline - now)))

    def check_tokenizer(self, probe: str = "Intent:\nCheckAccountBalance ü 123") -> None:
        """The server must split text into the same tokens as the local tokenizer (same model)."""
        remote = self._post("/tokenize", {"model": self.served_model, "prompt": probe, "add_special_tokens": False})
        local = self.encode(probe)
        if remote.get("tokens") != local:
            raise VLLMRequestError(
                f"the vLLM server's tokenizer differs from the local one for {self.served_model!r}: "
                f"{remote.get('tokens')} vs {local}; point PROMPTER_MODEL at the model the server serves"
            )

    # -- compiled label sets ----------------------------------------------------------------------------
    def compile(self, label_set: LabelSet) -> Compiled:
        """The label set's token trie (lead + name + terminator, as in the local engine), cached."""
        with self._lock:
            hit = self._compiled.get(label_set.key)
            if hit is not None:
                self._compiled.move_to_end(label_set.key)
                return hit
        end = self.tokenizer.eos_token_id if self.chat else self.encode("\n")[0]
        end = end[0] if isinstance(end, list) else end
        try:
            choice = ChoiceTrie.build([self.encode(self.lead + n) + [end] for n in label_set.names])
        except ValueError as exc:
            raise LabelSetError(str(exc)) from None
        trie = choice.trie
        branches = []
        for readout in choice.readouts:
            path = () if readout.node == ROOT else tuple(trie.tokens[n] for n in reversed(trie.ancestors(readout.node)))
            branches.append(Branch(path, readout.token_ids))
        compiled = Compiled(label_set, choice, branches, plan_probes(branches))
        with self._lock:
            self._compiled[label_set.key] = compiled
            while len(self._compiled) > 64:
                self._compiled.popitem(last=False)
        return compiled

    # -- decisions --------------------------------------------------------------------------------------
    def _run_probe(self, prompts: list[list[int]], probe: Probe, compiled: Compiled, raw: list[torch.Tensor]) -> None:
        """One completion per prompt and branch point of ``probe``; raw next-token log-probs into ``raw``."""
        branches = [compiled.branches[b] for b in probe.branches]
        choices = self._completions(
            [p + list(branch.path) for branch in branches for p in prompts],
            max_tokens=1,
            logprobs=len(probe.token_ids),
            logprob_token_ids=list(probe.token_ids),
            return_tokens_as_token_ids=True,
        )
        for k, (b, branch) in enumerate(zip(probe.branches, branches, strict=True)):
            wanted = [(j, t) for j, t in enumerate(branch.token_ids) if t in probe.token_ids]
            for i in range(len(prompts)):
                top = (choices[k * len(prompts) + i].get("logprobs") or {}).get("top_logprobs") or [{}]
                got = {int(key.removeprefix("token_id:")): value for key, value in top[0].items()}
                for j, t in wanted:
                    if t not in got:
                        raise EngineUnavailable(f"the vLLM server returned no log-probability for token {t}")
                    raw[b][i, j] = got[t]

    def label_logprobs(self, queries: list[Query], label_set: LabelSet) -> torch.Tensor:
        """(len(queries), len(labels)): log P(label | the answer is one of the labels)."""
        compiled = self.compile(label_set)
        prompts = [self.prompt_ids(q) for q in queries]
        chunks = [prompts[s : s + self.batch_size] for s in range(0, len(prompts), self.batch_size)]
        raws = [[torch.full((len(c), len(b.token_ids)), float("nan")) for b in compiled.branches] for c in chunks]
        # Every request at once (up to max_concurrency in flight): vLLM batches them continuously and shares
        # the prompts' common blocks, even among requests scheduled in the same step (measured: sending the
        # first branch point ahead to warm the cache was slower, 1.38 s vs 1.0 s a decision).
        work = [(c, probe) for c in range(len(chunks)) for probe in compiled.probes]
        list(self._pool.map(lambda w: self._run_probe(chunks[w[0]], w[1], compiled, raws[w[0]]), work))
        out = torch.zeros((len(queries), len(label_set)))
        for c, raw in enumerate(raws):
            reads = [torch.log_softmax(r, dim=1) for r in raw]  # renormalised among the allowed tokens
            rows = slice(c * self.batch_size, c * self.batch_size + len(chunks[c]))
            out[rows] = sum_paths(reads, compiled.choice.paths, len(chunks[c]))
        return out

    def label_by_choice(self, queries: list[Query], label_set: LabelSet) -> list[tuple[str, ...]]:
        """The reference path: vLLM's own constrained decoding (``structured_outputs.choice``), greedy.

        Single choice only (a multiple-choice control is decided per label by ``decide``).
        """
        if label_set.multiple:
            raise ValueError("label_by_choice decides single-choice controls only")
        if not queries:
            return []
        lead = self.encode(self.lead) if self.lead else []
        choices = self._completions(
            [self.prompt_ids(q) + lead for q in queries],
            max_tokens=max(len(self.encode(n)) for n in label_set.names) + 8,
            structured_outputs={"choice": list(label_set.names)},
        )
        out = []
        for choice in choices:
            name = choice["text"]
            if name not in label_set.names:
                raise VLLMRequestError(f"the vLLM server answered {name!r} outside the label set")
            out.append((label_set.label_of(name),))
        return out

    # -- free text ----------------------------------------------------------------------------------------
    def generate(self, queries: list[Query], max_tokens: int) -> list[str]:
        """One line of free text per query, constrained by vLLM to a single non-empty line."""
        if not queries or max_tokens <= 0:
            return ["" for _ in queries]
        choices = self._completions(
            [self.prompt_ids(q) for q in queries],
            max_tokens=max_tokens,
            structured_outputs={"regex": FREE_TEXT_REGEX},
        )
        return [c["text"].strip()[:FREE_TEXT_MAX_CHARS] for c in choices]

    def warmup(self, response_tokens: int = 0) -> float:
        """Pay the server's first-call costs (logprobs, grammar tables) before serving; seconds taken."""
        started = time.perf_counter()
        query = Query("Classify the text.\nOptions: alpha, beta\n\n", "Text:\nwarm up\n", "Label:")
        for multiple in (False, True):
            self.decide([query, query], LabelSet(("alpha", "beta"), multiple=multiple))
        if response_tokens:
            self.generate([query], 2)
        return time.perf_counter() - started


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict):
            return str(error.get("message", error))[:300]
        return str(error)[:300]
    return str(body)[:300]


def tokenizer_source(settings) -> tuple[Any, dict[str, Any]]:
    """Where the tokenizer of ``settings.model`` lives: the embedded model's folder, a directory or a model id."""
    from constraints.loading import EMBEDDED, embedded_model_dir  # torch and the GGUF converter: only when loading

    if settings.model == EMBEDDED:
        return embedded_model_dir(settings.home), {}
    return settings.model, ({"gguf_file": settings.gguf_file} if settings.gguf_file else {})


def load_engine(settings) -> VLLMEngine:
    """A VLLMEngine on ``settings.vllm_url``, checked against the server (model served, same tokenizer)."""
    from transformers import AutoTokenizer

    from constraints.loading import EMBEDDED, EMBEDDED_NAME  # torch: only when an engine is built

    source, kwargs = tokenizer_source(settings)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    local_id = EMBEDDED_NAME if settings.model == EMBEDDED else (Path(settings.model).name or settings.model)
    engine = VLLMEngine(
        settings.vllm_url,
        tokenizer,
        served_model=settings.vllm_model or local_id,
        timeout_s=settings.vllm_timeout_s,
        batch_size=settings.batch_size,
        max_concurrency=settings.vllm_max_concurrency,
        multi_label_threshold=settings.multi_label_threshold,
        calibration=settings.calibration,
    )
    card = engine.wait_for_server(settings.vllm_wait_s)
    engine.check_tokenizer()
    log.info("vLLM server %s serves %s (max_model_len %s)", engine.url, card.get("id"), card.get("max_model_len"))
    if settings.warmup:
        log.info("vLLM engine warmed up in %.1f s", engine.warmup(settings.response_max_tokens))
    return engine
