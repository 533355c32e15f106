"""`prompter eval` in-process on the tiny model: metrics agree with the predictions, report, bad ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service import metrics
from service.offline import eval as evaluate
from service.offline import label
from service.store import db
from tests.offline.conftest import LABELS, texts, write_jsonl


@pytest.fixture(autouse=True)
def _fresh_db_engine():
    yield
    db.dispose_engine()


def run(engine, tmp_path: Path, *args: str) -> tuple[int, dict]:
    out = tmp_path / "eval.json"
    out.unlink(missing_ok=True)
    argv = [*args, "--db", str(tmp_path / "p.sqlite3"), "--json", str(out), "--report", str(tmp_path / "report")]
    code = evaluate.main([*argv, "--no-progress"], engine)
    return code, json.loads(out.read_text()) if out.exists() else {}


def test_metrics_match_the_labeled_output_and_the_report_is_written(engine, tmp_path: Path) -> None:
    lines = texts(12)
    data = write_jsonl(tmp_path / "gold.jsonl", lines)
    labels = ",".join(LABELS)
    out = tmp_path / "out.json"
    assert label.main(["--input", str(data), "--labels", labels, "--db", str(tmp_path / "p.sqlite3"),
                       "--out", str(out), "--no-progress"], engine) == 0  # fmt: skip
    code, report = run(engine, tmp_path, "--input", str(data), "--labels", labels, "--target-accuracy", "0.5")
    assert code == 0
    assert {"accuracy", "macro_f1", "ece", "per_label"} <= set(report)
    (version,) = report["versions"]
    assert version["labeling"]["skipped"] == 12 and version["labeling"]["labeled"] == 0  # reused, not rerun

    predicted = [t["predictions"][0] for t in json.loads(out.read_text())]
    gold = [[line["label"]] for line in lines]
    pred = [p["result"][0]["value"]["choices"] for p in predicted]
    scores = [p["score"] for p in predicted]
    assert report["accuracy"] == pytest.approx(metrics.accuracy(gold, pred))
    assert report["macro_f1"] == pytest.approx(metrics.macro_f1(metrics.per_label(gold, pred, LABELS)))
    correct = metrics.exact_match(gold, pred)
    assert report["ece"] == pytest.approx(metrics.expected_calibration_error(scores, correct))
    assert set(report["per_label"]) == set(LABELS)
    assert sum(map(sum, version["confusion"]["matrix"])) == 12

    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"report.md", "reliability.png", "coverage.png"} <= files
    assert any(name.startswith("confusion-") and name.endswith(".png") for name in files)
    text = (tmp_path / "report" / "report.md").read_text()
    assert version["model_version"] in text and "## Calibration" in text and "## Per label" in text


def test_several_prompts_and_a_stored_prompt_version(engine, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "gold.jsonl", texts(6))
    base = ("--input", str(data), "--labels", ",".join(LABELS))
    code, first = run(engine, tmp_path, *base, "--prompt", "Product: {text}", "--prompt", "Topic of: {text}")
    assert code == 0
    versions = first["versions"]
    assert len(versions) == 2 and versions[0]["model_version"] != versions[1]["model_version"]
    stored_id = versions[1]["prompt_version_id"]
    code, again = run(engine, tmp_path, *base, "--prompt-version", str(stored_id))
    assert code == 0
    assert again["versions"][0]["model_version"] == versions[1]["model_version"]
    assert again["accuracy"] == versions[1]["accuracy"]
    assert again["versions"][0]["labeling"]["skipped"] == 6
    code, _ = run(engine, tmp_path, *base, "--prompt-version", "999")
    assert code == 2


def test_gold_labels_outside_the_config_are_counted_and_left_out(engine, tmp_path: Path, capsys) -> None:
    lines = [*texts(6), {"text": "a mortgage", "label": "mortgage"}, {"text": "x", "label": "mortgage"}]
    lines += [{"text": "no gold here"}]
    data = write_jsonl(tmp_path / "gold.jsonl", lines)
    code, report = run(engine, tmp_path, "--input", str(data), "--labels", ",".join(LABELS))
    assert code == 0
    assert report["evaluated"] == 6 and report["tasks"] == 9
    assert report["excluded"]["unknown_label_tasks"] == 2
    assert report["excluded"]["unknown_labels"] == {"mortgage": 2}
    assert report["excluded"]["unlabeled"] == 1
    err = capsys.readouterr().err
    assert "2 tasks have ground-truth labels that are not in the config's 'label' choices" in err
    assert "'mortgage' (2)" in err
    assert "not in the config: 2" in (tmp_path / "report" / "report.md").read_text()


def test_multi_label_exact_match_and_micro_f1(engine, tmp_path: Path) -> None:
    lines = [{"text": f"card and loan {i}", "labels": [["loan", "card"], ["card"], ["loan"]][i % 3]} for i in range(9)]
    data = write_jsonl(tmp_path / "gold.jsonl", lines)
    code, report = run(engine, tmp_path, "--input", str(data), "--labels", "loan,card", "--multiple")
    assert code == 0 and report["multiple"] is True
    version = report["versions"][0]
    assert "confusion" not in version
    assert 0.0 <= report["micro_f1"] <= 1.0
    assert report["accuracy"] == pytest.approx(version["correct"] / 9)


def test_no_usable_ground_truth_is_a_clear_error(engine, tmp_path: Path, capsys) -> None:
    data = write_jsonl(tmp_path / "plain.jsonl", [{"text": "a"}, {"text": "b"}])
    code, report = run(engine, tmp_path, "--input", str(data), "--labels", "x,y")
    assert code == 2 and report == {}
    err = capsys.readouterr().err
    assert "none of the 2 tasks has usable ground truth for 'label'" in err and "Traceback" not in err
    assert not (tmp_path / "report").exists()


def test_a_config_without_choices_cannot_be_evaluated(engine, tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.xml"
    config.write_text('<View><Text name="text" value="$text"/><TextArea name="answer" toName="text"/></View>')
    data = write_jsonl(tmp_path / "gold.jsonl", texts(2))
    code, _ = run(engine, tmp_path, "--input", str(data), "--config", str(config))
    assert code == 2
    assert "no Choices control: there are no labels to evaluate" in capsys.readouterr().err


def test_stored_only_scores_what_is_stored_without_labeling(engine, tmp_path: Path, capsys) -> None:
    data = write_jsonl(tmp_path / "gold.jsonl", texts(8))
    labels = ",".join(LABELS)
    base = ("--input", str(data), "--labels", labels)
    code, _ = run(engine, tmp_path, *base, "--stored-only")
    assert code == 2 and "has no stored predictions" in capsys.readouterr().err
    db.dispose_engine()
    assert label.main([*base, "--limit", "5", "--db", str(tmp_path / "p.sqlite3"), "--no-progress"], engine) == 0
    code, report = run(engine, tmp_path, *base, "--stored-only")
    assert code == 0
    assert (report["with_gold"], report["evaluated"], report["model"]) == (8, 5, "tiny")
    assert report["versions"][0]["labeling"]["labeled"] == 0
    assert "3 of 8 tasks have no prediction yet" in capsys.readouterr().err
