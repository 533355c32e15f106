"""Bad input from the command line: a clear message, an exit code, no traceback, no partial output file."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.offline.conftest import LABELS, command, subprocess_env, texts, write_jsonl


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cli(tmp_path: Path, tiny_model_dir: Path):
    env = subprocess_env(tmp_path, tiny_model_dir)

    def run(module: str, *args: str) -> subprocess.CompletedProcess:
        argv = command(module, *args, "--db", str(tmp_path / "p.sqlite3"), "--no-progress")
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run


def no_outputs(tmp_path: Path) -> bool:
    names = {p.name for p in tmp_path.iterdir()}
    return not names & {"out.json", "summary.json", "report"} and not any(n.endswith(".partial") for n in names)


def test_tasks_without_the_data_key_the_config_needs(cli, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [{"body": "x"}, {"body": "y"}])
    result = cli("label", "--input", str(data), "--labels", "a,b", "--out", str(tmp_path / "out.json"),
                 "--json", str(tmp_path / "s.json"))  # fmt: skip
    assert result.returncode == 3
    assert "line 1: has no data key 'text' (needed by <text>)" in result.stderr
    assert "line 2: has no data key 'text'" in result.stderr
    assert json.loads((tmp_path / "s.json").read_text())["failed"] == 2
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('<View><Text name="text" value="$text"/></View>', "no Choices, no Labels and no response TextArea"),
        ('<View><Choices name="c" toName="t"><Choice value="a"/></Choices></View>', "no Text, HyperText or Para"),
        ("<View><Text name=", "not valid XML"),
    ],
)
def test_a_config_with_nothing_to_predict(cli, tmp_path: Path, config: str, message: str) -> None:
    (tmp_path / "c.xml").write_text(config)
    data = write_jsonl(tmp_path / "in.jsonl", texts(3))
    for module in ("label", "eval"):
        result = cli(module, "--input", str(data), "--config", str(tmp_path / "c.xml"),
                     "--out" if module == "label" else "--report", str(tmp_path / ("out.json" if module == "label"
                     else "report")), "--json", str(tmp_path / "summary.json"))  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert f"prompter {module}: error:" in result.stderr and message in result.stderr
        assert no_outputs(tmp_path)


def test_unreachable_label_studio(cli, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for module in ("label", "eval"):
        result = cli(module, "--ls-url", url, "--ls-api-key", "0" * 40, "--project", "1",
                     "--json", str(tmp_path / "summary.json"))  # fmt: skip
        assert result.returncode == 1
        assert f"cannot reach Label Studio at {url}" in result.stderr and "is it running?" in result.stderr
        assert no_outputs(tmp_path)


def test_ground_truth_labels_not_in_the_config(cli, tmp_path: Path) -> None:
    lines = [*texts(3), {"text": "house", "label": "mortgage"}, {"text": "hi", "label": "greeting"}]
    data = write_jsonl(tmp_path / "gold.jsonl", lines)
    result = cli("eval", "--input", str(data), "--labels", ",".join(LABELS), "--json", str(tmp_path / "e.json"),
                 "--report", str(tmp_path / "r"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 tasks have ground-truth labels that are not in the config's 'label' choices" in result.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["excluded"]["unknown_labels"] == {"greeting": 1, "mortgage": 1}
    assert report["evaluated"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "missing.jsonl", "--labels", "a"], "task file missing.jsonl does not exist"),
        (["--labels", "a"], "give either --input FILE or --ls-url URL"),
        (["--input", "x.jsonl", "--ls-url", "http://x", "--project", "1"], "give either --input FILE or --ls-url"),
        (["--ls-url", "http://127.0.0.1:9"], "--ls-url needs --project ID"),
        (["--input", "in.jsonl"], "no labeling config: give --config FILE"),
        (["--input", "in.jsonl", "--labels", "a", "--chunk-size", "0"], "--chunk-size must be at least 1"),
    ],
)
def test_bad_options(cli, tmp_path: Path, args: list[str], message: str) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"text": "no label"}])
    result = cli("label", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
