"""Killing `prompter label` at random points never loses or duplicates a prediction (real subprocesses)."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.offline.conftest import LABELS, command, subprocess_env, texts, write_jsonl

TASKS = 2000
MARGIN = 600  # tasks left after a kill target: the tiny model labels ~700 tasks/s, a kill must land first
TIMEOUT = 600


def stored(db_path: Path) -> tuple[int, int]:
    """(prediction rows, distinct (task, model version) pairs); (0, 0) before the table exists."""
    if not db_path.exists():
        return 0, 0
    with sqlite3.connect(db_path, timeout=30) as conn:
        try:
            return conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT CAST(task_id AS TEXT) || '@' || model_version) FROM prediction"
            ).fetchone()
        except sqlite3.OperationalError:  # not migrated yet
            return 0, 0


def stored_now(db_path: Path) -> int:
    """Prediction rows while the run writes; -1 when the database is busy (a poll never waits on the writer's
    lock: a 30 s busy wait during the run's migration once let a whole run finish before the signal)."""
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(db_path, timeout=0.05) as conn:
            return conn.execute("SELECT COUNT(*) FROM prediction").fetchone()[0]
    except sqlite3.OperationalError:  # locked, or not migrated yet
        return -1


def wait_for(condition, proc: subprocess.Popen, timeout: float = TIMEOUT) -> bool:
    """True when ``condition()`` holds; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.02)
    raise AssertionError("timed out")


def _interruptible() -> None:
    """SIGINT at its default in the run, as under a terminal's Ctrl-C. A test session started in the background
    (nohup, `make test &`) passes SIGINT on ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def job(tmp_path: Path, tiny_model_dir: Path, request: pytest.FixtureRequest):
    tasks = getattr(request, "param", TASKS)
    lines = [*texts(tasks), {"txt": "no text key"}, {"text": ""}]
    data = write_jsonl(tmp_path / "in.jsonl", lines)
    db_path, out, summary = tmp_path / "p.sqlite3", tmp_path / "out.json", tmp_path / "summary.json"
    argv = command(
        "label", "--input", str(data), "--labels", ",".join(LABELS), "--db", str(db_path),
        "--out", str(out), "--json", str(summary), "--chunk-size", "3", "--no-progress",
    )  # fmt: skip
    env = subprocess_env(tmp_path, tiny_model_dir)

    def start() -> tuple[subprocess.Popen, Path]:
        err = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
        with err.open("wb") as f:
            proc = subprocess.Popen(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=f, cwd=tmp_path, preexec_fn=_interruptible
            )
        return proc, err

    return start, db_path, out, summary


def test_sigkill_at_random_points_then_rerun(job) -> None:
    start, db_path, out, summary = job
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    kills = 0
    for round_ in range(5):
        before = stored(db_path)[0]
        if before >= TASKS - MARGIN:
            break
        proc, _ = start()
        if round_ == 0:
            time.sleep(rng.uniform(0.0, 1.5))  # anywhere in start-up: imports, model load, migration
        else:
            target = rng.randint(before + 1, TASKS - MARGIN)
            wait_for(lambda t=target: stored_now(db_path) >= t, proc)
            time.sleep(rng.uniform(0.0, 0.05))  # and anywhere inside the next chunk
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(TIMEOUT)
        rows, distinct = stored(db_path)
        assert rows == distinct, f"duplicated predictions after kill {round_} (seed {seed})"
        if out.exists():  # only a finished run writes it (the kill may land after that), and never partly
            assert rows == TASKS, f"an output file appeared before the run finished (seed {seed})"
            assert len(json.loads(out.read_text())) == TASKS, f"seed {seed}"
    assert kills >= 3, f"the runs ended before they could be killed (seed {seed})"

    rows_before = stored(db_path)[0]
    proc, err = start()
    assert proc.wait(TIMEOUT) == 3, err.read_text()  # done; the two bad lines failed
    report = json.loads(summary.read_text())
    assert report["skipped"] == rows_before, f"seed {seed}"
    assert report["labeled"] + report["skipped"] == TASKS and report["failed"] == 2
    assert stored(db_path) == (TASKS, TASKS)
    exported = json.loads(out.read_text())
    assert [t["id"] for t in exported] == list(range(1, TASKS + 1))
    assert all(len(t["predictions"]) == 1 for t in exported)
    assert not list(out.parent.glob(".out.json.*"))


LONG = 8000  # tasks: the run cannot finish in the moment between the 10th stored prediction and the signal


@pytest.mark.parametrize("job", [LONG], indirect=True)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_cleanly_and_the_rerun_finishes(job, sig: signal.Signals) -> None:
    start, db_path, out, summary = job
    proc, err = start()
    assert wait_for(lambda: stored_now(db_path) >= 10, proc), err.read_text()
    proc.send_signal(sig)
    code = proc.wait(TIMEOUT)
    text = err.read_text()
    assert code == 130, f"exit {code}, {stored(db_path)[0]} of {LONG} stored: {text[-2000:]}"
    assert "rerun the same command to continue" in text and "Traceback" not in text
    report = json.loads(summary.read_text())
    assert report["interrupted"] is True and report["out"] is None
    assert not out.exists()
    rows, distinct = stored(db_path)
    assert rows == distinct and rows >= 10

    proc, err = start()
    assert proc.wait(TIMEOUT) == 3, err.read_text()
    report = json.loads(summary.read_text())
    assert report["skipped"] == rows and report["labeled"] == LONG - rows
    assert len(json.loads(out.read_text())) == LONG
