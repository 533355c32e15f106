"""Fault tests run real `prompter serve` processes on the tiny model saved to a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.served import save_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))
