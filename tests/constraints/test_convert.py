"""The converted-model cache (constraints/convert.py): keyed by the GGUF's identity and the converting code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from constraints import convert


def test_the_key_follows_the_file_and_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = convert.cache_dir(tmp_path, "m", "sha256:aa")
    assert first == convert.cache_dir(tmp_path, "m", "sha256:aa")
    assert first != convert.cache_dir(tmp_path, "m", "sha256:bb")
    monkeypatch.setattr(convert, "code_version", lambda: "changed")
    assert first != convert.cache_dir(tmp_path, "m", "sha256:aa")

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF one")
    before = convert.file_identity(gguf)
    gguf.write_bytes(b"GGUF two, longer")
    assert convert.file_identity(gguf) != before


def test_a_cached_folder_is_reused_and_a_new_one_replaces_the_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[list[str]] = []

    def child(command: list[str], **_: object) -> subprocess.CompletedProcess:
        runs.append(command)
        target = Path(command[4])
        target.mkdir(parents=True)
        (target / convert.MANIFEST).write_text("{}")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(convert.subprocess, "run", child)
    old = convert.converted(tmp_path, "m", "sha256:aa", "embedded")
    assert runs[0][1:4] == ["-m", "constraints.convert", "embedded"]
    assert convert.converted(tmp_path, "m", "sha256:aa", "embedded") == old and len(runs) == 1
    new = convert.converted(tmp_path, "m", "sha256:bb", "embedded")
    assert len(runs) == 2 and new.exists() and not old.exists()


def test_a_failed_conversion_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert.subprocess, "run", lambda command, **_: subprocess.CompletedProcess(command, 1))
    with pytest.raises(RuntimeError, match="exit code 1"):
        convert.converted(tmp_path, "m", "sha256:aa", "/nowhere/model.gguf")
