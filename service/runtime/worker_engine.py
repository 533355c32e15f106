"""The engine as the service's callers see it: model calls made outside the model worker run inside it.

Interactive requests are first in the model queue, but work that called the engine from its own thread
(warming, the agent's rewrites and weight fits, evaluations) took the engine's forward lock whenever it
was free and held it for a whole generation, so a Shift+Enter could wait seconds behind it. Through this
wrapper such a call is queued at background priority and runs between chunks, in the one worker thread
that runs every forward; calls from the worker itself (a batch's ``decide``) run at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.runtime.queue import MicroBatcher

# the engine methods that run the model; everything else (tokenizer, ids, tries) is read directly
MODEL_CALLS = frozenset({"label_logprobs", "decide", "generate", "tag_spans", "warmup", "warm_free_text"})


class WorkerEngine:
    """Wraps an engine; ``inner`` is the engine itself."""

    def __init__(self, inner: Any, batcher: Callable[[], MicroBatcher]) -> None:
        self.inner = inner
        self._batcher = batcher

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if name not in MODEL_CALLS or not callable(value):
            return value

        def queued(*args: Any, **kwargs: Any) -> Any:
            batcher = self._batcher()
            if batcher.in_worker():
                return value(*args, **kwargs)
            return batcher.call(lambda: value(*args, **kwargs), "background").result()

        return queued

    def __repr__(self) -> str:
        return f"WorkerEngine({self.inner!r})"
