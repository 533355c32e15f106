"""Fixtures for the offline commands: the tiny model in-process, and saved to a folder for subprocesses."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from constraints.local import LocalEngine
from tests.tiny_model import tiny_model

REPO = Path(__file__).resolve().parents[2]
LABELS = ["loan", "card", "credit card"]


@pytest.fixture
def engine() -> LocalEngine:
    model, tokenizer = tiny_model()
    return LocalEngine(model, tokenizer, "tiny", batch_size=4)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved as a Hugging Face folder: what PROMPTER_MODEL points a subprocess at."""
    folder = tmp_path_factory.mktemp("tiny-model")
    model, tokenizer = tiny_model()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: Iterable[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def texts(n: int) -> list[dict[str, str]]:
    """``n`` labeled lines over LABELS."""
    return [{"text": f"customer {i}: I want to cancel my card number {i}", "label": LABELS[i % 3]} for i in range(n)]


def subprocess_env(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    """The environment of a `python -m service.offline.*` run on the tiny model, isolated in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTER_")}
    env.update(
        PROMPTER_MODEL=str(model_dir),
        PROMPTER_HOME=str(tmp_path / "home"),
        PROMPTER_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=str(REPO),
    )
    return env


def command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"service.offline.{module}", *args]
