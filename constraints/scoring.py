"""One forward pass per batch: task tokens and a token trie after a cached shared prefix.

Layout of the keys for row ``b``: ``[prefix (P) | body (T, right-padded) | trie (M)]``. Body tokens
attend causally to the prefix and their own row's body; trie nodes attend to the prefix, the row's valid
body tokens, and their own ancestors. Positions are logical, so a trie node sits right after its row's
last body token plus its depth. Sliding-window layers get the same mask cut to their window.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from constraints.trie import ROOT, Readout, TokenTrie


@dataclass
class PrefixState:
    ids: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, batch 1


class TreeScorer:
    """Scores token tries after prompts on a Hugging Face causal LM, reusing prefix KV caches."""

    def __init__(self, model, prefix_cache_size: int = 8) -> None:
        self.model = model
        self.config = model.config.get_text_config(decoder=True)
        self.device = next(model.parameters()).device
        self.out_weight = model.get_output_embeddings().weight
        self.softcap = getattr(self.config, "final_logit_softcapping", None)
        layer_types = getattr(self.config, "layer_types", None) or []
        self.layer_types = sorted(set(layer_types))
        self.window = getattr(self.config, "sliding_window", None)
        self._prefixes: OrderedDict[tuple[int, ...], PrefixState] = OrderedDict()
        self._prefix_cache_size = prefix_cache_size
        self._lock = threading.Lock()

    # -- prefix cache ---------------------------------------------------------------------------
    def prefix_state(self, ids: list[int]) -> PrefixState:
        key = tuple(ids)
        with self._lock:
            hit = self._prefixes.get(key)
            if hit is not None:
                self._prefixes.move_to_end(key)
                return hit
        x = torch.tensor([ids], device=self.device)
        pos = torch.arange(len(ids), device=self.device)[None]
        cache = DynamicCache()
        mask = self._causal_mask(len(ids))
        with torch.inference_mode():
            self.model.model(input_ids=x, position_ids=pos, attention_mask=mask, past_key_values=cache, use_cache=True)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        state = PrefixState(list(ids), kv)
        with self._lock:
            self._prefixes[key] = state
            while len(self._prefixes) > self._prefix_cache_size:
                self._prefixes.popitem(last=False)
        return state

    def forget_prefixes(self) -> None:
        with self._lock:
            self._prefixes.clear()

    # -- masks ----------------------------------------------------------------------------------
    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        dtype = self.out_weight.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill_(
            ~allowed, torch.finfo(dtype).min
        )

    def _mapping(self, allowed: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor):
        """A mask per layer type (sliding layers cut to their window), as the model's layers expect."""
        full = self._additive(allowed)
        if "sliding_attention" not in self.layer_types or not self.window:
            return full if not self.layer_types else {t: full for t in self.layer_types}
        near = (q_pos[:, :, None] - k_pos[:, None, :]) < self.window
        sliding = self._additive(allowed & near[:, None])
        return {t: (sliding if t == "sliding_attention" else full) for t in self.layer_types}

    def _causal_mask(self, n: int):
        pos = torch.arange(n, device=self.device)[None]
        allowed = (pos[0][:, None] >= pos[0][None, :])[None, None]
        return self._mapping(allowed, pos, pos)

    # -- scoring --------------------------------------------------------------------------------
    def score(
        self, prefix_ids: list[int], bodies: list[list[int]], trie: TokenTrie, readouts: list[Readout]
    ) -> list[torch.Tensor]:
        """Log-probabilities per readout, shape (batch, len(token_ids)), renormalised over its token ids."""
        if not bodies or any(len(b) == 0 for b in bodies):
            raise ValueError("every body needs at least one token (the answer cue)")
        prefix = self.prefix_state(prefix_ids)
        dev = self.device
        B, P, M = len(bodies), len(prefix_ids), len(trie)
        T = max(len(b) for b in bodies)
        Q = T + M
        lengths = torch.tensor([len(b) for b in bodies], device=dev)

        ids = torch.zeros((B, Q), dtype=torch.long, device=dev)
        for i, body in enumerate(bodies):
            ids[i, : len(body)] = torch.tensor(body, device=dev)
        ids[:, T:] = torch.tensor(trie.tokens, dtype=torch.long, device=dev)

        t = torch.arange(T, device=dev)
        depth = torch.tensor(trie.depths, device=dev)
        body_pos = (P + t)[None].expand(B, T)
        trie_pos = P + lengths[:, None] + depth[None] - 1
        q_pos = torch.cat([body_pos, trie_pos], dim=1)
        k_pos = torch.cat([torch.arange(P, device=dev)[None].expand(B, P), q_pos], dim=1)

        allowed = torch.zeros((B, Q, P + Q), dtype=torch.bool, device=dev)
        allowed[:, :, :P] = True
        causal = t[:, None] >= t[None, :]
        valid_body = t[None] < lengths[:, None]  # (B, T)
        allowed[:, :T, P : P + T] = causal[None] & (
            valid_body[:, None, :] | torch.eye(T, dtype=torch.bool, device=dev)[None]
        )
        allowed[:, T:, P : P + T] = valid_body[:, None, :]
        allowed[:, T:, P + T :] = self._ancestry(trie)[None]
        mask = self._mapping(allowed[:, None], q_pos, k_pos)

        cache = DynamicCache(ddp_cache_data=[(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in prefix.kv])
        with torch.inference_mode():
            hidden = self.model.model(
                input_ids=ids, position_ids=q_pos, attention_mask=mask, past_key_values=cache, use_cache=True
            ).last_hidden_state
            rows = torch.arange(B, device=dev)
            out = []
            for r in readouts:
                h = hidden[rows, lengths - 1] if r.node == ROOT else hidden[:, T + r.node]
                logits = h @ self.out_weight[list(r.token_ids)].T
                if self.softcap:
                    logits = torch.tanh(logits / self.softcap) * self.softcap
                out.append(torch.log_softmax(logits.float(), dim=-1))
        return out

    @staticmethod
    def _ancestry(trie: TokenTrie) -> torch.Tensor:
        m = len(trie)
        anc = torch.zeros((m, m), dtype=torch.bool)
        for node in range(m):
            anc[node, trie.ancestors(node)] = True
        return anc
