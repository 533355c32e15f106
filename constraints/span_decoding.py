"""Constrained decoding of ``label: span`` lines on a local causal LM (``constraints.spans``).

One task at a time after the cached instruction prefix. Each line is two choices, each made exactly (the most
probable of every allowed continuation, not token-greedy) in one forward pass: the tokens chosen so far are fed
with a token trie of the allowed continuations behind a tree attention mask (``constraints.scoring``'s
layout), logits are read only for the allowed tokens at each node, renormalised among them, and the trie's
keys are dropped again. First the label (a path in the label trie, or ``none``), then the span with how the
line ends (a path in the trie of the text's candidate runs, then a newline: another line follows, or a blank
line: the answer ends). A task with ``n`` spans costs ``2n + 1`` forwards, the first one carrying its text.
"""

from __future__ import annotations

import math

import torch
from transformers import DynamicCache

from constraints.scoring import TreeScorer
from constraints.spans import (
    LabelTrie,
    Span,
    SpanAnswer,
    SpanSource,
    candidates,
    char_span,
    lines_possible,
    tokens_of,
)
from constraints.trie import ROOT, TokenTrie

MAX_SPANS = 32
MAX_SPAN_TOKENS = 12


class SpanDecoder:
    """Decodes spans for one label set; ``newline`` ends a line, ``stop`` (a blank line) ends the answer."""

    def __init__(
        self,
        scorer: TreeScorer,
        first: LabelTrie,
        rest: LabelTrie,
        labels: tuple[str, ...],
        newline: int,
        stop: int,
        max_span_tokens: int = MAX_SPAN_TOKENS,
    ) -> None:
        self.scorer = scorer
        self.first, self.rest = first, rest
        self.labels = labels
        self.newline, self.stop = newline, stop
        self.max_span_tokens = max_span_tokens

    # -- the model ------------------------------------------------------------------------------
    def _tree(self, cache: DynamicCache, pending: list[int], trie: TokenTrie) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``pending`` to ``cache`` and score ``trie`` after it: hidden states at the last pending token
        and at every trie node. The trie's keys are cropped off again."""
        dev = self.scorer.device
        past, m, n = cache.get_seq_length(), len(pending), len(trie)
        depth = torch.tensor(trie.depths, dtype=torch.long, device=dev)
        q_pos = torch.cat([torch.arange(past, past + m, device=dev), past + m + depth - 1])[None]
        k_pos = torch.cat([torch.arange(past, device=dev), q_pos[0]])[None]
        allowed = torch.zeros((m + n, past + m + n), dtype=torch.bool, device=dev)
        allowed[:, :past] = True
        allowed[:m, past : past + m] = torch.ones((m, m), dtype=torch.bool, device=dev).tril()
        allowed[m:, past : past + m] = True
        if n:
            allowed[m:, past + m :] = self.scorer._ancestry(trie).to(dev)
        mask = self.scorer._mapping(allowed[None, None], q_pos, k_pos)
        ids = torch.tensor([pending + trie.tokens], dtype=torch.long, device=dev)
        with torch.inference_mode():
            hidden = self.scorer.model.model(
                input_ids=ids, position_ids=q_pos, attention_mask=mask, past_key_values=cache, use_cache=True
            ).last_hidden_state[0]
        if n:
            cache.crop(-n)
        return hidden[m - 1], hidden[m:]

    def _logits(self, hidden: torch.Tensor, tokens: list[int]) -> torch.Tensor:
        """Logits of ``tokens`` at each row of ``hidden`` (one product for every node of a trie)."""
        with torch.inference_mode():
            logits = hidden @ self.scorer.out_weight[tokens].T
            if self.scorer.softcap:
                logits = torch.tanh(logits / self.scorer.softcap) * self.scorer.softcap
            return logits.float()

    def _best_path(
        self, last: torch.Tensor, nodes: torch.Tensor, trie: TokenTrie, finals: dict[int, list[int]]
    ) -> tuple[int, int, float]:
        """The most probable (node, final token) of ``trie``: a path ending at ``node`` followed by one of
        ``finals[node]`` (no final token: -1). Every node's continuation is renormalised over its children
        plus its finals. Returns (node, final, log-probability)."""
        order = [ROOT, *range(len(trie))]  # parents come before their children
        options = {}
        for node in order:
            kids = trie.children.get(node, {})
            options[node] = list(kids) + [t for t in finals.get(node, []) if t >= 0]
        vocab = sorted({t for opts in options.values() for t in opts})
        column = {t: j for j, t in enumerate(vocab)}
        logits = self._logits(torch.cat([last[None], nodes]), vocab) if vocab else None
        score = {ROOT: 0.0}
        best = (ROOT, -1, -math.inf)
        for node in order:
            kids, opts = trie.children.get(node, {}), options[node]
            if not opts:
                if -1 in finals.get(node, []) and score[node] > best[2]:
                    best = (node, -1, score[node])
                continue
            row = logits[0 if node == ROOT else node + 1, [column[t] for t in opts]]
            logp = torch.log_softmax(row, dim=-1).tolist() if len(opts) > 1 else [0.0]
            for k, tok in enumerate(opts):
                lp = score[node] + logp[k]
                if k < len(kids):
                    score[kids[tok]] = lp
                elif lp > best[2]:
                    best = (node, tok, lp)
        return best

    # -- decoding -------------------------------------------------------------------------------
    def decode(self, prefix_ids: list[int], body_ids: list[int], source: SpanSource) -> SpanAnswer:
        if not lines_possible(source, 0, self.max_span_tokens):
            return SpanAnswer((), 1.0, 0)
        prefix = self.scorer.prefix_state(prefix_ids)
        cache = DynamicCache(ddp_cache_data=[(k, v) for k, v in prefix.kv])
        pending, steps = list(body_ids), 0
        spans: list[Span] = []
        total, floor, flat = 0.0, 0, source.positions
        trie = self.first
        while True:
            last, nodes = self._tree(cache, pending, trie.trie)
            steps += 1
            node, _, label_lp = self._best_path(last, nodes, trie.trie, {end: [-1] for end in trie.ends})
            total += label_lp
            pending = [trie.trie.tokens[a] for a in reversed(trie.trie.ancestors(node))]
            label = trie.ends[node]
            if label < 0:  # the stop word: no span at all
                break
            cands = candidates(source, floor, self.max_span_tokens)
            spans_trie, owner = TokenTrie(), {}
            for c in cands:
                owner.setdefault(spans_trie.insert(tokens_of(source, c)), c)  # a repeated run: its leftmost copy
            finals = {}
            for end, c in owner.items():
                more = len(spans) + 1 < MAX_SPANS and lines_possible(source, c.stop, self.max_span_tokens)
                finals[end] = [self.newline, self.stop] if more else [self.stop]
            last, nodes = self._tree(cache, pending, spans_trie)
            steps += 1
            end, final, span_lp = self._best_path(last, nodes, spans_trie, finals)
            total += span_lp
            chosen = owner[end]
            pending += tokens_of(source, chosen) + [final]
            seg_index, first_tok = flat[chosen.first]
            seg = source.segments[seg_index]
            a, b = char_span(seg, first_tok, flat[chosen.stop - 1][1]) or (0, 0)
            spans.append(Span(seg_index, a, b, seg.text[a:b], self.labels[label], math.exp(label_lp + span_lp)))
            floor = chosen.stop
            if final == self.stop:
                break
            trie = self.rest
        return SpanAnswer(tuple(spans), math.exp(total), steps)
