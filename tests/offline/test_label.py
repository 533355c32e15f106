"""`prompter label` in-process on the tiny model: outputs, resuming, prompt versions, bad tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

from service.labeling import parse_config
from service.offline import label
from service.offline.tasks_io import labels_config
from service.predictor import Prompt, label_tasks
from service.prompting import default_prompt
from service.store import db, repo
from service.store.models import Prediction, PromptVersion
from tests.offline.conftest import LABELS, texts, write_jsonl

SUMMARY_KEYS = {"tasks", "labeled", "skipped", "failed", "seconds", "tasks_per_s"}


@pytest.fixture(autouse=True)
def _fresh_db_engine():
    yield
    db.dispose_engine()


def rows(db_path: Path) -> list[Prediction]:
    with Session(db.create_db_engine(f"sqlite:///{db_path}")) as s:
        return list(s.exec(select(Prediction)))


def run(engine, tmp_path: Path, *args: str) -> tuple[int, dict]:
    summary = tmp_path / "summary.json"
    code = label.main([*args, "--db", str(tmp_path / "p.sqlite3"), "--json", str(summary), "--no-progress"], engine)
    return code, json.loads(summary.read_text()) if summary.exists() else {}


def test_labels_a_jsonl_file_into_an_importable_task_list(engine, tmp_path: Path, capsys) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", texts(10))
    out = tmp_path / "out.json"
    code, summary = run(engine, tmp_path, "--input", str(data), "--labels", ",".join(LABELS), "--out", str(out))
    assert code == 0
    assert set(summary) >= SUMMARY_KEYS
    assert (summary["tasks"], summary["labeled"], summary["skipped"], summary["failed"]) == (10, 10, 0, 0)
    assert summary["tasks_per_s"] > 0 and summary["model_version"] == f"prompt-{summary['prompt_version_id']}@tiny"
    tasks = json.loads(out.read_text())
    assert [t["id"] for t in tasks] == list(range(1, 11))
    for task, line in zip(tasks, texts(10), strict=True):
        assert task["data"] == {"text": line["text"]}
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == summary["model_version"]
        assert 0 < prediction["score"] <= 1
        (region,) = prediction["result"]
        assert region["from_name"] == "label" and region["to_name"] == "text" and region["type"] == "choices"
        assert region["value"]["choices"][0] in LABELS
    assert len(rows(tmp_path / "p.sqlite3")) == 10
    assert "10 labeled" in capsys.readouterr().err


def test_predictions_are_the_services_own(engine, tmp_path: Path) -> None:
    """No second code path: the file's predictions equal label_tasks on the same engine and prompt."""
    data = write_jsonl(tmp_path / "in.jsonl", texts(6))
    out = tmp_path / "out.json"
    prompt = "Which product is this about? {text}"
    assert run(engine, tmp_path, "--input", str(data), "--labels", ",".join(LABELS), "--prompt", prompt,
               "--out", str(out))[0] == 0  # fmt: skip
    schema = parse_config(labels_config(LABELS))
    direct = label_tasks(engine, schema, [{"data": {"text": t["text"]}} for t in texts(6)], Prompt(prompt))
    exported = json.loads(out.read_text())
    assert [t["predictions"][0]["result"] for t in exported] == [p.result for p in direct]
    assert [t["predictions"][0]["score"] for t in exported] == pytest.approx([p.score for p in direct])


def test_a_rerun_skips_what_is_stored_and_a_new_prompt_is_a_new_model_version(engine, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", texts(8))
    out = tmp_path / "out.json"
    args = ("--input", str(data), "--labels", ",".join(LABELS), "--out", str(out))
    _, first = run(engine, tmp_path, *args, "--limit", "5")
    assert (first["labeled"], first["skipped"]) == (5, 0)
    code, second = run(engine, tmp_path, *args)
    assert code == 0 and (second["labeled"], second["skipped"]) == (3, 5)
    assert second["model_version"] == first["model_version"]
    assert len(json.loads(out.read_text())) == 8
    _, third = run(engine, tmp_path, *args, "--prompt", "Product: {text}")
    assert third["model_version"] != first["model_version"] and third["labeled"] == 8
    stored = rows(tmp_path / "p.sqlite3")
    assert len(stored) == 16
    assert len({(r.task_id, r.model_version) for r in stored}) == 16


def test_label_studio_tasks_with_a_config_file(engine, tmp_path: Path) -> None:
    config = tmp_path / "config.xml"
    config.write_text(
        '<View><Text name="utterance" value="$utterance"/>'
        '<Choices name="intent" toName="utterance" choice="multiple"><Choice value="loan"/>'
        '<Choice value="card" alias="CARD"/></Choices></View>'
    )
    tasks = [
        {"id": 41, "data": {"utterance": "I need a loan"}, "predictions": [{"model_version": "old", "result": []}]},
        {"id": 42, "data": {"utterance": "cancel my card"}},
    ]
    data = tmp_path / "tasks.json"
    data.write_text(json.dumps(tasks))
    out = tmp_path / "out.json"
    code, summary = run(engine, tmp_path, "--input", str(data), "--config", str(config), "--out", str(out))
    assert code == 0 and summary["labeled"] == 2
    exported = json.loads(out.read_text())
    assert [t["id"] for t in exported] == [41, 42]
    assert [p["model_version"] for p in exported[0]["predictions"]] == ["old", summary["model_version"]]
    for task in exported:
        region = task["predictions"][-1]["result"][0]
        assert region["from_name"] == "intent" and region["to_name"] == "utterance"
        assert set(region["value"]["choices"]) <= {"loan", "CARD"}


def test_bad_tasks_fail_one_by_one_with_a_reason(engine, tmp_path: Path, capsys) -> None:
    lines = [*texts(3), {"txt": "wrong key"}, {"text": "   "}, "{broken", {"text": "fine again"}]
    data = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.json"
    code, summary = run(engine, tmp_path, "--input", str(data), "--labels", ",".join(LABELS), "--out", str(out))
    assert code == 3  # finished, some tasks failed
    assert (summary["labeled"], summary["failed"]) == (4, 3)
    errors = {f["task"]: f["error"] for f in summary["failures"]}
    assert errors[4] == "line 4: has no data key 'text' (needed by <text>)"
    assert errors[5] == "line 5: 'text' is empty"
    assert errors[6].startswith("line 6: not valid JSON")
    assert [t["id"] for t in json.loads(out.read_text())] == [1, 2, 3, 7]
    err = capsys.readouterr().err
    assert "failed: line 4: has no data key 'text'" in err and "Traceback" not in err


def test_labels_taken_from_a_labeled_file_when_no_config_is_given(engine, tmp_path: Path, capsys) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", texts(4))
    code, summary = run(engine, tmp_path, "--input", str(data))
    assert code == 0 and summary["labeled"] == 4
    assert "labeling config built from the 3 labels found" in capsys.readouterr().err


def test_nothing_labeled_writes_no_output_file(engine, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [{"txt": "a"}, {"txt": "b"}])
    out = tmp_path / "out.json"
    code, summary = run(engine, tmp_path, "--input", str(data), "--labels", "a,b", "--out", str(out))
    assert code == 3 and summary["failed"] == 2 and summary["out"] is None
    assert not out.exists()


def test_a_prompt_given_on_the_command_line_does_not_become_the_active_one(engine, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", texts(2))
    _, summary = run(engine, tmp_path, "--input", str(data), "--labels", ",".join(LABELS), "--prompt", "P: {text}")
    with Session(db.create_db_engine(f"sqlite:///{tmp_path / 'p.sqlite3'}")) as s:
        active = repo.active_prompt(s, summary["project_id"])
        used = s.get(PromptVersion, summary["prompt_version_id"])
    assert active.text == default_prompt(parse_config(labels_config(LABELS)))
    assert used.text == "P: {text}" and not used.is_active
