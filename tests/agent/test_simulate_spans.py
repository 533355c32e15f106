"""prompter simulate on a span file (tiny model): 0 and N corrections, span F1 beside the dictionary."""

from __future__ import annotations

import json
from pathlib import Path

from agent import simulate

ROWS = [
    ("arrive on Thursday", [("Thursday", "date_from")]),
    ("leave on Sunday", [("Sunday", "date_to")]),
    ("2 adults from Thursday", [("2", "adults"), ("Thursday", "date_from")]),
    ("hello there", []),
    ("for 3 adults on Sunday", [("3", "adults"), ("Sunday", "date_to")]),
    ("thanks, bye", []),
    ("we are 2 adults", [("2", "adults")]),
    ("Thursday please", [("Thursday", "date_from")]),
]


def _line(text: str, spans: list[tuple[str, str]]) -> str:
    found = [{"start": text.index(t), "end": text.index(t) + len(t), "label": x, "text": t} for t, x in spans]
    return json.dumps({"text": text, "spans": found, "fold": 0}) + "\n"


def test_span_mode_reports_span_f1_and_the_dictionary_baseline(tmp_path: Path, tiny_engine) -> None:
    data = tmp_path / "slots.jsonl"
    data.write_text("".join(_line(t, s) for t, s in ROWS))
    parser = simulate.argparse.ArgumentParser()
    simulate.configure(parser)
    summary_path = tmp_path / "summary.json"
    args = parser.parse_args(
        [str(data), "--corrections", "5", "--heldout", "3", "--latency-tasks", "1", "--out", str(tmp_path / "out"),
         "--json", str(summary_path)]
    )  # fmt: skip
    assert simulate.run_command(args, engine=tiny_engine) == 0
    summary = json.loads(summary_path.read_text())
    assert [r["corrections"] for r in summary["rounds"]] == [0, 5]
    for key in ("final_heldout_span_f1", "final_heldout_span_f1_partial", "final_heldout_accuracy"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["final_heldout_span_f1"] <= summary["final_heldout_span_f1_partial"]
    assert 0.0 <= summary["baselines"]["dictionary_span_f1"] <= 1.0
    assert summary["rounds"][0]["baselines"]["dictionary_span_f1"] in (0.0, 1.0)  # no corrections: no phrase
    assert summary["rounds"][0]["dictionary_phrases"] == 0 and summary["rounds"][1]["dictionary_phrases"] > 0
    assert summary["final_heldout_micro_f1"] == summary["final_heldout_span_f1"]
