"""`prompter eval` stores each version's result; the API lists them per version and the history carries the latest."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from service.offline import eval as evaluate
from tests.offline.conftest import LABELS, texts, write_jsonl

FIGURES = ("tasks", "accuracy", "macro_f1", "micro_f1", "ece", "per_label", "confusion", "reliability", "coverage")


def run_eval(engine, tmp_path: Path, *args: str) -> dict:
    """`prompter eval` in-process on the configured store (the test's database), its --json summary."""
    out = tmp_path / "eval.json"
    out.unlink(missing_ok=True)
    argv = [*args, "--json", str(out), "--no-report", "--no-progress"]
    assert evaluate.main(argv, engine) == 0
    return json.loads(out.read_text())


def test_eval_results_are_stored_per_version_and_served(client: TestClient, tiny_engine, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "gold.jsonl", texts(9))
    base = ("--input", str(data), "--labels", ",".join(LABELS), "--target-accuracy", "0.5")
    first = run_eval(tiny_engine, tmp_path, *base, "--prompt", "Product: {text}", "--prompt", "Topic of: {text}")
    project = first["project_id"]
    a, b = first["versions"]

    history = client.get(f"/projects/{project}/prompts").json()
    by_id = {v["id"]: v for v in history}
    for run in (a, b):
        headline = by_id[run["prompt_version_id"]]["evaluation"]
        assert headline["id"] == run["evaluation_id"]
        assert {k: headline[k] for k in ("tasks", "accuracy", "macro_f1", "ece")} == {
            k: run[k] for k in ("tasks", "accuracy", "macro_f1", "ece")
        }
    never = [v for v in history if v["id"] not in (a["prompt_version_id"], b["prompt_version_id"])]
    assert never and all(v["evaluation"] is None for v in never)  # the default prompt: never evaluated
    assert {"model_version", "is_active", "metrics", "text"} <= set(history[0])  # the existing fields stay

    (stored,) = client.get(f"/projects/{project}/prompts/{a['prompt_version_id']}/evaluations").json()
    assert {k: stored[k] for k in FIGURES} == {k: a[k] for k in FIGURES}
    assert sum(map(sum, stored["confusion"]["matrix"])) == 9
    assert stored["threshold"] == a["threshold"] and stored["target_accuracy"] == 0.5
    assert (stored["model_version"], stored["source"], stored["control"]) == (
        a["model_version"],
        first["source"],
        "label",
    )

    # a second run of one stored version: newest first, and the history shows the newer one
    again = run_eval(tiny_engine, tmp_path, *base, "--prompt-version", str(a["prompt_version_id"]), "--bins", "5")
    rows = client.get(f"/projects/{project}/prompts/{a['prompt_version_id']}/evaluations").json()
    assert [r["id"] for r in rows] == [again["versions"][0]["evaluation_id"], a["evaluation_id"]]
    assert len(rows[0]["reliability"]) == 5 and rows[0]["run_id"] != rows[1]["run_id"]
    history = client.get(f"/projects/{project}/prompts").json()
    assert {v["id"]: v["evaluation"] and v["evaluation"]["id"] for v in history}[a["prompt_version_id"]] == rows[0][
        "id"
    ]


def test_evaluations_of_unknown_project_or_version_are_404(client: TestClient, tiny_engine, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "gold.jsonl", texts(3))
    report = run_eval(tiny_engine, tmp_path, "--input", str(data), "--labels", ",".join(LABELS))
    project, version = report["project_id"], report["versions"][0]["prompt_version_id"]
    response = client.get(f"/projects/nope/prompts/{version}/evaluations")
    assert response.status_code == 404 and response.json()["detail"] == "no project nope"
    response = client.get(f"/projects/{project}/prompts/999/evaluations")
    assert response.status_code == 404 and response.json()["detail"] == "no prompt version 999"


def test_multiple_choice_evaluations_have_no_confusion_matrix(client: TestClient, tiny_engine, tmp_path: Path) -> None:
    lines = [{"text": f"card and loan {i}", "labels": [["loan", "card"], ["card"]][i % 2]} for i in range(4)]
    data = write_jsonl(tmp_path / "gold.jsonl", lines)
    report = run_eval(tiny_engine, tmp_path, "--input", str(data), "--labels", "loan,card", "--multiple")
    version = report["versions"][0]
    (stored,) = client.get(
        f"/projects/{report['project_id']}/prompts/{version['prompt_version_id']}/evaluations"
    ).json()
    assert stored["confusion"] is None and stored["accuracy"] == version["accuracy"]
