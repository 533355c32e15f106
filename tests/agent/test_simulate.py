"""prompter simulate on a small labeled file, with the stub engine: the summary's shape and its promises."""

from __future__ import annotations

import json
from pathlib import Path

from agent import simulate
from tests.agent.conftest import CopyEngine, labeled


def test_simulate_writes_rounds_baselines_and_final_accuracy(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in labeled()))
    parser = simulate.argparse.ArgumentParser()
    simulate.configure(parser)
    out, summary_path = tmp_path / "results", tmp_path / "summary.json"
    args = parser.parse_args(
        [str(data), "--corrections", "20", "--rounds", "2", "--heldout", "9", "--strategies", "retrieval",
         "--latency-tasks", "2", "--out", str(out), "--json", str(summary_path), "--name", "tiny"]
    )  # fmt: skip
    assert simulate.run_command(args, engine=CopyEngine()) == 0
    summary = json.loads(summary_path.read_text())
    assert summary == json.loads((out / "simulate-tiny.json").read_text())
    assert [r["corrections"] for r in summary["rounds"]] == [10, 20]
    for r in summary["rounds"]:
        assert {"corrections", "heldout_accuracy", "accepted", "interactive_p50_s"} <= set(r)
        assert 0.0 <= r["heldout_accuracy"] <= 1.0 and r["interactive_p50_s"] >= 0.0
    assert {"default_prompt", "minilm_logreg", "minilm_1nn"} <= set(summary["baselines"])
    assert summary["baselines"]["default_prompt"] < 0.5  # the stub answers the first label without demonstrations
    assert summary["final_heldout_accuracy"] == summary["rounds"][-1]["heldout_accuracy"]
    assert summary["heldout"] == 9 and summary["accepted_lowered_heldout"] == []
    assert "| round | corrections |" in (out / "simulate-tiny.md").read_text()


def test_read_jsonl_accepts_label_or_labels(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "labels": ["x", "y"]}\n')
    rows, multiple = simulate.read_jsonl(path)
    assert multiple and [r.labels for r in rows] == [("x",), ("x", "y")]
