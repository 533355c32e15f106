"""Model version strings: one names both the prompt version and the model, so a new prompt is a new version."""

from __future__ import annotations

import re

_PATTERN = re.compile(r"^prompt-(\d+)@(.+)$")


def model_version(version_id: int, model_id: str) -> str:
    """What Label Studio sees as the model version, e.g. ``prompt-3@google/gemma-3-270m-it``."""
    return f"prompt-{version_id}@{model_id}"


def parse_model_version(value: str) -> tuple[int, str] | None:
    """(prompt version id, model id) of a string made by ``model_version``; None for anything else."""
    match = _PATTERN.match(value)
    return (int(match.group(1)), match.group(2)) if match else None
