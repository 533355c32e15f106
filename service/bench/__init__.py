"""Benchmarks that print figures: ``outlines`` (`prompter bench`: the engine against outlines and a bare prefill),
``engines`` (`prompter bench-engines`: the local engine against a vLLM server), ``common`` (sets, prompts, timing)."""
