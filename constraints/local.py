"""The local engine: a transformers model in this process, labels decided by trie scoring."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from itertools import groupby

import torch

from constraints.base import Query
from constraints.decisions import LabelDecider, sum_paths
from constraints.labelset import LabelSet, LabelSetError
from constraints.scoring import TreeScorer
from constraints.span_decoding import SpanDecoder
from constraints.spans import STOP_WORD, LabelTrie, Segment, SpanAnswer, SpanSource, segment
from constraints.tokens import ChatTokens
from constraints.trie import ChoiceTrie

log = logging.getLogger(__name__)


@dataclass
class Compiled:
    """Everything derived from one label set for one tokenizer: built once, reused for every request."""

    label_set: LabelSet
    choice: ChoiceTrie


class LocalEngine(ChatTokens, LabelDecider):
    name = "local"

    def __init__(
        self,
        model,
        tokenizer,
        model_id: str,
        batch_size: int = 16,
        batch_tokens: int = 4096,
        multi_label_threshold: float = 0.1,
        calibration: str = "none",
        answer_lead: str = "\n",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens  # bound on rows x key positions per forward
        self.threshold = multi_label_threshold
        self.calibration = calibration
        self.scorer = TreeScorer(model)
        self._compiled: OrderedDict[tuple, Compiled] = OrderedDict()
        self._priors: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._lock = threading.RLock()  # one forward at a time: torch already uses every core
        self._generator = None
        self._generator_lock = threading.Lock()
        # What separates the cue from the answer. After a newline a label's canonical tokens carry no
        # leading-space marker, so constrained generation cannot detour through a lone space token
        # (measured on dstc11: greedy agreed with trie scoring on 19/20 tasks with "\n", 9/20 with " ").
        # Demonstrations in prompts should use the same format: f"{cue}{engine.lead}{label}".
        self.init_tokens(answer_lead)

    def _single_token(self, text: str) -> int:
        ids = self.encode(text)
        return ids[0]

    # -- compiled constraints ---------------------------------------------------------------------
    def compile(self, label_set: LabelSet) -> Compiled:
        """Token tries for a label set, cached per label set (never rebuilt per request)."""
        with self._lock:
            hit = self._compiled.get(label_set.key)
            if hit is not None:
                self._compiled.move_to_end(label_set.key)
                return hit
        lead = self.lead
        end = self.tokenizer.eos_token_id if self.chat else self._single_token("\n")
        end = end[0] if isinstance(end, list) else end
        try:
            compiled = Compiled(label_set, ChoiceTrie.build([self.encode(lead + n) + [end] for n in label_set.names]))
        except ValueError as exc:
            raise LabelSetError(str(exc)) from None
        with self._lock:
            self._compiled[label_set.key] = compiled
            while len(self._compiled) > 64:
                self._compiled.popitem(last=False)
        return compiled

    def forget(self) -> None:
        """Drop compiled label sets, calibration priors and cached prefixes (the state of a fresh process)."""
        with self._lock:
            self._compiled.clear()
            self._priors.clear()
            self.scorer.forget_prefixes()

    # -- decisions --------------------------------------------------------------------------------
    def label_logprobs(self, queries: list[Query], label_set: LabelSet) -> torch.Tensor:
        """(len(queries), len(labels)): log P(label | the answer is one of the labels)."""
        compiled = self.compile(label_set)
        trie = compiled.choice
        out = torch.empty((len(queries), len(label_set)))
        order = sorted(range(len(queries)), key=lambda i: queries[i].prefix)
        for _prefix, group in groupby(order, key=lambda i: queries[i].prefix):
            idx = list(group)
            prefix_ids = self.prefix_ids(queries[idx[0]])
            bodies = {i: self.body_ids(queries[i]) for i in idx}
            idx.sort(key=lambda i: len(bodies[i]))  # similar lengths share a batch: little padding
            for chunk in self._chunks(idx, [len(bodies[i]) for i in idx], len(prefix_ids) + len(trie.trie)):
                with self._lock:
                    reads = self.scorer.score(prefix_ids, [bodies[i] for i in chunk], trie.trie, trie.readouts)
                out[chunk] = sum_paths(reads, trie.paths, len(chunk))
        return out

    def _chunks(self, idx: list[int], lengths: list[int], fixed: int) -> list[list[int]]:
        """Split rows (sorted by body length) into forwards of at most ``batch_size`` rows and ``batch_tokens``
        rows x key positions: each row holds its own copy of the prefix's keys and values in every layer.

        Measured on banking77 (537-token prefix): 16 rows peaked 570 MiB above 8 rows and ran slower
        (7.97 vs 8.69 tasks/s).
        """
        chunks: list[list[int]] = []
        for i, length in zip(idx, lengths, strict=True):
            last = chunks[-1] if chunks else None
            if last and len(last) < self.batch_size and (len(last) + 1) * (fixed + length) <= self.batch_tokens:
                last.append(i)
            else:
                chunks.append([i])
        return chunks

    # -- spans --------------------------------------------------------------------------------------
    def span_decoder(self, label_set: LabelSet) -> SpanDecoder:
        """The ``label: span`` decoder for a Labels control's set, cached per label set like the tries."""
        key = ("spans", label_set.names)
        with self._lock:
            hit = self._compiled.get(key)
        if hit is not None:
            return hit
        newline, stop = self._single_token("\n"), self._single_token("\n\n")
        names = [self.encode(n + ":") for n in label_set.names]
        try:
            first = LabelTrie.build(names, self.encode(STOP_WORD) + [stop])
            rest = LabelTrie.build(names, None)
        except ValueError as exc:
            raise LabelSetError(str(exc)) from None
        decoder = SpanDecoder(self.scorer, first, rest, label_set.labels, newline, stop)
        with self._lock:
            self._compiled[key] = decoder
            while len(self._compiled) > 64:
                self._compiled.popitem(last=False)
        return decoder

    def tag_spans(self, queries: list[Query], sources: list[SpanSource], label_set: LabelSet) -> list[SpanAnswer]:
        """Spans of each source tagged with the set's labels, greedy under the ``label: span`` constraint."""
        decoder = self.span_decoder(label_set)
        lead = self.encode(self.lead) if self.lead else []
        out = []
        for query, source in zip(queries, sources, strict=True):
            with self._lock:
                out.append(decoder.decode(self.prefix_ids(query), self.body_ids(query) + lead, source))
        return out

    def span_segment(self, text: str) -> Segment:
        """``text`` tokenized as spans are written (``constraints.spans.segment``)."""
        return segment(self.tokenizer, text)

    WARM_QUERY = Query("Classify the text.\nOptions: alpha, beta\n\n", "Text:\nwarm up\n", "Label:")

    def warmup(self, response_tokens: int = 0) -> float:
        """Pay the first labeling call's costs (allocations, kernels) before serving; seconds taken.

        Only what any first request pays: single and multiple choice share one scoring path, so one call; the
        free-text generator (outlines + llguidance: 262k-token vocabulary, a torch.compile'd mask kernel, 15-20 s on
        this CPU) is ``warm_free_text``, which the runtime runs in the background once the labels are served.
        """
        started = time.perf_counter()
        self.decide([self.WARM_QUERY, self.WARM_QUERY], LabelSet(("alpha", "beta")))
        if response_tokens:
            self.warm_free_text()
        self.scorer.forget_prefixes()
        return time.perf_counter() - started

    def warm_free_text(self) -> float:
        """Build the free-text generator and run its first (compiling) call; seconds taken."""
        started = time.perf_counter()
        self.generate([self.WARM_QUERY], 2)
        return time.perf_counter() - started

    # -- free text ----------------------------------------------------------------------------------
    def _outlines_generator(self):
        with self._generator_lock:  # built once, even when the background warm-up and a request race
            if self._generator is None:
                import outlines
                from outlines.types import Regex

                model = outlines.from_transformers(self.model, self.tokenizer)
                self._generator = outlines.Generator(model, Regex(r"[^\n]{1,400}"), backend="llguidance")
            return self._generator

    def generate(self, queries: list[Query], max_tokens: int) -> list[str]:
        """One line of free text per query, outlines-constrained to a single non-empty line."""
        if not queries or max_tokens <= 0:
            return ["" for _ in queries]
        gen = self._outlines_generator()
        texts = [self.full_text(q) for q in queries]
        with self._lock:
            if len(texts) == 1:
                out = [gen(texts[0], max_new_tokens=max_tokens, do_sample=False)]
            else:
                out = gen.batch(texts, max_new_tokens=max_tokens, do_sample=False)
        return [o.strip() for o in out]


def load_engine(settings) -> LocalEngine:
    from constraints.loading import load_model  # the GGUF converter: only when a model is loaded

    started = time.perf_counter()
    model, tokenizer, model_id = load_model(
        settings.model, settings.gguf_file, settings.device, settings.dtype, settings.home, settings.threads
    )
    log.info("model and tokenizer loaded in %.1f s", time.perf_counter() - started)
    engine = LocalEngine(
        model,
        tokenizer,
        model_id,
        batch_size=settings.batch_size,
        batch_tokens=settings.batch_tokens,
        multi_label_threshold=settings.multi_label_threshold,
        calibration=settings.calibration,
    )
    if settings.warmup:
        log.info("warmed up in %.1f s", engine.warmup())
    return engine
