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
    assert {"default_prompt", "minilm_logreg", "minilm_1nn", "label_names", "knn1_label_names"} <= set(
        summary["baselines"]
    )
    assert 0.0 <= summary["ablation"]["without_model"] <= 1.0 and 0.0 <= summary["final_heldout_ece"] <= 1.0
    assert summary["final_heldout_micro_f1"] == summary["final_heldout_accuracy"]  # single choice: the same
    assert summary["baselines"]["default_prompt"] < 0.5  # the stub answers the first label without demonstrations
    assert summary["final_heldout_accuracy"] == summary["rounds"][-1]["heldout_accuracy"]
    assert summary["heldout"] == 9 and summary["accepted_lowered_heldout"] == []
    assert "| round | corrections |" in (out / "simulate-tiny.md").read_text()


def test_read_jsonl_accepts_label_or_labels(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "labels": ["x", "y"]}\n')
    rows, multiple = simulate.read_jsonl(path)
    assert multiple and [r.labels for r in rows] == [("x",), ("x", "y")]


def test_multi_label_summary_carries_micro_f1(tmp_path: Path) -> None:
    rows = [{"text": t, "labels": [label] + (["card"] if "credit" in t else [])} for t, label in labeled()]
    data = tmp_path / "multi.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parser = simulate.argparse.ArgumentParser()
    simulate.configure(parser)
    summary_path = tmp_path / "summary.json"
    args = parser.parse_args(
        [str(data), "--corrections", "10", "--rounds", "1", "--heldout", "8", "--strategies", "weights",
         "--latency-tasks", "1", "--out", str(tmp_path / "r"), "--json", str(summary_path)]
    )  # fmt: skip
    assert simulate.run_command(args, engine=CopyEngine()) == 0
    summary = json.loads(summary_path.read_text())
    assert summary["multiple"] is True
    assert 0.0 <= summary["final_heldout_micro_f1"] <= 1.0
    assert {"minilm_1nn_micro_f1", "label_names_micro_f1", "knn1_label_names_micro_f1"} <= set(summary["baselines"])


def test_missing_or_malformed_data_is_one_line_naming_the_file(tmp_path: Path, capsys) -> None:
    parser = simulate.argparse.ArgumentParser()
    simulate.configure(parser)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": "b", label}\n')
    for path, where in (
        (tmp_path / "missing.jsonl", "missing.jsonl: cannot read"),
        (bad, "bad.jsonl:2: not valid JSON"),
    ):
        assert simulate.run_command(parser.parse_args([str(path)]), engine=CopyEngine()) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and where in err and "Traceback" not in err
