"""Which module builds each engine: ``settings.engine`` -> ``"module:function"``. Adding an engine is adding a line."""

from __future__ import annotations

import importlib

from constraints.base import Engine

ENGINES: dict[str, str] = {
    "local": "constraints.local:load_engine",  # transformers in this process
    "vllm": "constraints.vllm:load_engine",  # a vLLM server over HTTP
}


def load_engine(settings) -> Engine:
    """The engine ``settings.engine`` names, built from ``settings`` (imported only when chosen)."""
    try:
        target = ENGINES[settings.engine]
    except KeyError:
        raise ValueError(f"unknown engine {settings.engine!r}; known: {sorted(ENGINES)}") from None
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)(settings)
