"""Fixtures for end-to-end tests against a real Label Studio server (and a real `prompter serve`).

- `label_studio`: one Label Studio 1.23 server per session, installed by scripts/install_label_studio.sh
  into its own virtual environment on first use, started from the migrated template database.
- `ls_api`: the REST calls of the ML backend workflow (`ls_api.py`), each asserting its status code.
- `prompt_project`: a factory for a project with the prompt-centric config and dstc11 dialogue tasks.
- `prompter_server`: one `prompter serve` per session, waited on until its model is ready.

After each test using `label_studio` or `prompter_server`, their logs are read: a line showing an ML
backend failure fails the test (Label Studio reports a failed /predict as success). A test expecting
failures requests the `allow_backend_errors` fixture.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dstc11 import dialogue_task, intents, load_utterances, one_per_intent, prompt_centric_config
from ls_api import LabelStudioAPI
from ls_server import INSTALL_SCRIPT, LabelStudioServer
from prompter_server import PrompterServer

_HERE = Path(__file__).resolve().parent
_TIMINGS: list[tuple[str, float]] = []


def _timed(what: str, seconds: float) -> None:
    _TIMINGS.append((what, seconds))
    print(f"\n[e2e] {what}: {seconds:.1f} s", flush=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _TIMINGS:
        terminalreporter.section("e2e timings")
        for what, seconds in _TIMINGS:
            terminalreporter.write_line(f"{what}: {seconds:.1f} s")


def _install_label_studio() -> None:
    """Run the idempotent install script; a second run only checks the version and the template."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=1500, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{INSTALL_SCRIPT} did not finish in {exc.timeout} s; run it by hand to see why")
    output = "\n".join(
        line for line in (result.stdout + result.stderr).splitlines() if "is ignored: it is neither" not in line
    )
    print(f"\n{output}", flush=True)
    if result.returncode != 0:
        pytest.fail(
            f"installing Label Studio failed (exit {result.returncode}). Run `bash {INSTALL_SCRIPT}` "
            f"(it needs the package registry; PROMPTER_LS_VENV / PROMPTER_LS_TEMPLATE choose where).\n{output}"
        )
    _timed("install_label_studio.sh", time.monotonic() - started)


# Label Studio gives /predict (bulk, interactive, and the START_TRAINING webhook) 100 s. Measured here with
# other jobs on the 2 shared cores: one task's bulk /predict on the embedded model took 47 s, an interactive
# one 24 s; a few tasks in one call can pass 100 s. 240 s keeps a slow machine from turning into an empty
# "Retrieved 0 predictions". Project webhooks get 1 s: at a load average of 14 Prompter once stored an
# annotation 1.0 s after LS sent it, LS logged a ReadTimeout and the event counted as lost; 10 s. Health
# (1 s) and setup (3 s) keep LS's defaults.
LS_TEST_ENV = {"ML_TIMEOUT_PREDICT": "240", "WEBHOOK_TIMEOUT": "10"}


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    _install_label_studio()
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio"), extra_env=LS_TEST_ENV)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"Label Studio did not start: {exc}")
    _timed(f"Label Studio start (port {server.port})", server.startup_seconds or 0.0)
    try:
        yield server
    finally:
        server.stop()
        print(f"\n[e2e] Label Studio log: {server.log_path}", flush=True)


@pytest.fixture(scope="session")
def ls_api(label_studio: LabelStudioServer) -> LabelStudioAPI:
    return LabelStudioAPI(label_studio)


# The e2e refinement is started by Label Studio's START_TRAINING; a refinement started by the count of
# disagreements while tests annotate would hold the project's one refinement slot and refuse it.
PROMPTER_TEST_ENV = {"PROMPTER_AGENT_DISAGREEMENTS_TRIGGER": "100000"}


@pytest.fixture(scope="session")
def prompter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrompterServer]:
    server = PrompterServer(tmp_path_factory.mktemp("prompter"), extra_env=PROMPTER_TEST_ENV)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"`prompter serve` did not become ready: {exc}")
    _timed(f"prompter serve start until model ready (port {server.port})", server.startup_seconds or 0.0)
    try:
        yield server
    finally:
        server.stop()
        print(f"\n[e2e] prompter log: {server.log_path}", flush=True)


@pytest.fixture
def allow_backend_errors() -> None:
    """Request this fixture in a test that provokes ML backend failures on purpose."""


# Per server log: the byte offset up to which it has been checked. A test's check starts there, not at
# the test's own start, so what module-scoped fixtures did between two tests is checked too.
_CHECKED: dict[int, int] = {}


@pytest.fixture(autouse=True)
def _fail_on_backend_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    servers = [
        request.getfixturevalue(name) for name in ("label_studio", "prompter_server") if name in request.fixturenames
    ]
    before = [_CHECKED.get(id(server), 0) for server in servers]
    starts = [server.log_size() for server in servers]
    yield
    allowed = "allow_backend_errors" in request.fixturenames
    report = []
    for server, checked, start in zip(servers, before, starts, strict=True):
        end = server.log_size()
        _CHECKED[id(server)] = end
        # With allow_backend_errors only the test's own span is excused, not its fixtures' setup.
        errors = server.log_errors(since=checked)
        if allowed:
            own = set(server.log_errors(since=start))
            errors = [line for line in errors if line not in own]
        if errors:
            # pytest removes old temporary folders, so the message carries the evidence itself.
            report.append(
                f"{type(server).__name__} logged errors during the test ({server.log_path}):\n"
                + "\n".join(errors[:40])
                + f"\n--- last lines of its log ---\n{server.log_tail(40)}"
            )
    if report:
        pytest.fail("\n\n".join(report))


@pytest.fixture(scope="session")
def dstc11_utterances() -> list:
    try:
        return load_utterances()
    except FileNotFoundError as exc:
        pytest.fail(f"{exc}; set PROMPTER_DSTC11_PATH to utterances.jsonl")


@pytest.fixture
def prompt_project(ls_api: LabelStudioAPI, dstc11_utterances: list) -> Callable[..., dict[str, Any]]:
    """`prompt_project(n_tasks=3)` -> {"project": {...}, "task_ids": [...], "utterances": [...], "labels": [...]}.

    A project with the prompt-centric config (all dstc11-insurance intents as choices) and one dialogue
    task per intent, for the first `n_tasks` intents in sorted order.
    """

    def create(n_tasks: int = 3, title: str | None = None) -> dict[str, Any]:
        labels = intents(dstc11_utterances)
        chosen = one_per_intent(dstc11_utterances, n_tasks)
        project = ls_api.create_project(title or f"prompter e2e {time.time():.0f}", prompt_centric_config(labels))
        task_ids = ls_api.import_tasks(project["id"], [dialogue_task(u) for u in chosen])
        return {"project": project, "task_ids": task_ids, "utterances": chosen, "labels": labels}

    return create
