"""`prompter eval` on a Labels config: span metrics recomputed from the stored predictions agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service import span_metrics
from service.labeling import labels_config
from service.offline import eval as evaluate
from service.spans import parse_key
from service.store import db

ROWS = [
    {"text": "we arrive tomorrow at 7 p.m.", "spans": [{"start": 10, "end": 18, "label": "date"}]},
    {"text": "two adults and one kid 🐱", "spans": [{"start": 0, "end": 3, "label": "adults"}]},
    {"text": "Laters", "spans": []},
]


@pytest.fixture(autouse=True)
def _fresh_db_engine():
    yield
    db.dispose_engine()


def test_span_eval_reports_exact_and_partial_f1(engine, tmp_path: Path) -> None:
    data = tmp_path / "slots.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    config = tmp_path / "config.xml"
    config.write_text(labels_config(["date", "time", "adults"], "slots"))
    out = tmp_path / "eval.json"
    argv = ["--input", str(data), "--config", str(config), "--db", str(tmp_path / "p.sqlite3"), "--json", str(out)]
    assert evaluate.main([*argv, "--no-progress", "--no-report"], engine) == 0
    report = json.loads(out.read_text())
    assert report["control"] == "slots" and report["with_gold"] == 3
    assert 0 <= report["span_f1"] <= report["span_f1_partial"] <= 1
    run = report["versions"][0]
    assert run["tasks"] == 3 and run["exact"]["gold"] == 2
    with db.sql_engine(f"sqlite:///{tmp_path / 'p.sqlite3'}").connect() as conn:
        rows = conn.exec_driver_sql("SELECT task_id, labels FROM prediction ORDER BY task_id").fetchall()
    pred = [[parse_key(k) for k in json.loads(labels)["slots"]] for _, labels in rows]
    gold = [[(s["start"], s["end"], s["label"]) for s in r["spans"]] for r in ROWS]
    assert span_metrics.span_scores(gold, pred)["f1"] == pytest.approx(report["span_f1"])
