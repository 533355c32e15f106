"""`prompter label` / `prompter eval` against a real Label Studio server (label-studio-sdk on the wire)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from service.offline import eval as evaluate
from service.offline import label
from service.offline.tasks_io import labels_config
from service.store import db
from tests.offline.conftest import LABELS, texts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from ls_server import LabelStudioServer, template_dir, venv_dir  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ls(tmp_path_factory: pytest.TempPathFactory):
    if not (venv_dir() / "bin" / "label-studio").exists() or not (template_dir() / "label_studio.sqlite3").exists():
        pytest.skip("Label Studio is not installed: run scripts/install_label_studio.sh")
    with LabelStudioServer(tmp_path_factory.mktemp("label-studio")) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_db_engine():
    yield
    db.dispose_engine()


def project_with_tasks(ls: LabelStudioServer, n: int, annotated: int) -> tuple[int, list[int]]:
    project = ls.api(
        "POST", "/api/projects", json={"title": "offline", "label_config": labels_config(LABELS)}, expect=201
    )
    pid = project.json()["id"]
    lines = texts(n)
    ls.api("POST", f"/api/projects/{pid}/import", json=[{"data": {"text": t["text"]}} for t in lines], expect=201)
    ids = sorted(
        t["id"] for t in ls.api("GET", "/api/tasks", params={"project": pid, "page_size": 1000}).json()["tasks"]
    )
    for tid, line in list(zip(ids, lines, strict=True))[:annotated]:
        region = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [line["label"]]}}
        ls.api("POST", f"/api/tasks/{tid}/annotations", json={"result": [region]}, expect=201)
    return pid, ids


def predictions(ls: LabelStudioServer, task_id: int) -> list[dict]:
    return ls.api("GET", "/api/predictions", params={"task": task_id}, expect=200).json()


def test_label_a_project_resume_posting_and_evaluate_its_annotations(ls, engine, tmp_path: Path) -> None:
    pid, ids = project_with_tasks(ls, 9, annotated=5)
    base = ["--ls-url", ls.url, "--ls-api-key", ls.token, "--project", str(pid), "--db", str(tmp_path / "p.sqlite3")]
    summary_path, out = tmp_path / "s.json", tmp_path / "out.json"
    args = [*base, "--json", str(summary_path), "--out", str(out), "--no-progress", "--chunk-size", "4"]

    assert label.main(args, engine) == 0
    summary = json.loads(summary_path.read_text())
    assert (summary["labeled"], summary["posted"], summary["project_id"]) == (9, 9, str(pid))
    mv = summary["model_version"]
    for tid in ids:
        (p,) = predictions(ls, tid)
        assert p["model_version"] == mv and 0 < p["score"] <= 1
        assert p["result"][0]["value"]["choices"][0] in LABELS

    assert label.main(args, engine) == 0  # nothing new: nothing labeled, nothing posted twice
    summary = json.loads(summary_path.read_text())
    assert (summary["labeled"], summary["skipped"], summary["posted"]) == (0, 9, 0)
    assert all(len(predictions(ls, tid)) == 1 for tid in ids)

    # stored by a run that died before posting: the rerun posts exactly those
    for tid in ids[:3]:
        ls.api("DELETE", f"/api/predictions/{predictions(ls, tid)[0]['id']}", expect=204)
    assert label.main(args, engine) == 0
    summary = json.loads(summary_path.read_text())
    assert (summary["labeled"], summary["posted"]) == (0, 3)
    assert all(len(predictions(ls, tid)) == 1 for tid in ids)

    report_path = tmp_path / "e.json"
    code = evaluate.main([*base, "--json", str(report_path), "--report", str(tmp_path / "r"), "--no-progress"], engine)
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["evaluated"] == 5 and report["excluded"]["unlabeled"] == 4
    assert report["versions"][0]["model_version"] == mv and report["versions"][0]["labeling"]["skipped"] == 5


def test_the_output_file_imports_as_tasks_with_predictions(ls, engine, tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(t) + "\n" for t in texts(4)))
    out = tmp_path / "out.json"
    argv = ["--input", str(data), "--labels", ",".join(LABELS), "--db", str(tmp_path / "p.sqlite3"), "--out", str(out)]
    assert label.main([*argv, "--no-progress"], engine) == 0
    project = ls.api(
        "POST", "/api/projects", json={"title": "import", "label_config": labels_config(LABELS)}, expect=201
    )
    pid = project.json()["id"]
    body = ls.api("POST", f"/api/projects/{pid}/import", json=json.loads(out.read_text()), expect=201).json()
    assert body["task_count"] == 4 and body["prediction_count"] == 4
    tasks = ls.api("GET", "/api/tasks", params={"project": pid, "fields": "all"}).json()["tasks"]
    assert sorted(t["data"]["text"] for t in tasks) == sorted(t["text"] for t in texts(4))
    assert all(len(t["predictions"]) == 1 for t in tasks)


def test_a_wrong_key_or_project_is_a_clear_error(ls, engine, tmp_path: Path, capsys) -> None:
    base = ["--ls-url", ls.url, "--db", str(tmp_path / "p.sqlite3"), "--no-progress"]
    assert label.main([*base, "--ls-api-key", "f" * 40, "--project", "1"], engine) == 1
    assert "refused the API key (HTTP 401)" in capsys.readouterr().err
    assert label.main([*base, "--ls-api-key", ls.token, "--project", "99999"], engine) == 1
    assert "has no project 99999 (HTTP 404)" in capsys.readouterr().err
