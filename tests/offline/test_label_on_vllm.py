"""`prompter label` on the vLLM engine (a fake server backed by the tiny model): a server that goes down
mid-run stops the run with its reason, nothing is marked failed, and a rerun resumes where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from constraints.vllm import VLLMEngine
from service.offline import label
from service.offline.project import EXIT_FAILED
from service.store import db
from tests.constraints.test_vllm_client import FakeVLLM
from tests.offline.conftest import LABELS, texts, write_jsonl
from tests.offline.test_label import rows
from tests.tiny_model import tiny_model


@pytest.fixture(autouse=True)
def _fresh_db_engine():
    yield
    db.dispose_engine()


def test_server_down_mid_run_stops_it_and_a_rerun_resumes(tmp_path: Path, capsys) -> None:
    model, tokenizer = tiny_model()
    fake = FakeVLLM(model)
    calls = {"n": 0, "down_after": 2}  # the first chunk, then (once per prompt) the labels' model reference

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] > calls["down_after"]:
            raise httpx.ConnectError("connection refused")
        return fake(request)

    engine = VLLMEngine("http://vllm.test", tokenizer, "tiny", batch_size=4, transport=httpx.MockTransport(handler))
    data = write_jsonl(tmp_path / "in.jsonl", texts(10))
    args = ["--input", str(data), "--labels", ",".join(LABELS), "--db", str(tmp_path / "p.sqlite3"), "--no-progress"]
    summary = tmp_path / "summary.json"
    code = label.main([*args, "--json", str(summary)], engine)
    assert code == EXIT_FAILED
    err = capsys.readouterr().err
    assert "the vLLM server at http://vllm.test is unreachable: ConnectError" in err
    assert len(rows(tmp_path / "p.sqlite3")) == 4  # the first chunk, stored before the server went down
    calls["down_after"] = 10**6  # the server is back: the same command finishes the job
    assert label.main([*args, "--json", str(summary)], engine) == 0
    result = json.loads(summary.read_text())
    assert (result["labeled"], result["skipped"], result["failed"]) == (6, 4, 0)
    assert len(rows(tmp_path / "p.sqlite3")) == 10
