"""`prompter demo` as a new user runs it: both servers up, the project ready and labeled, a screenshot, the
Shift+Enter flow in the real labeling screen, and Ctrl-C stopping both servers. The tests run in order on
one demo (a module-scoped fixture): the last one stops it.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from service.demo.labelstudio import ERROR_PATTERNS, Credentials
from service.demo.processes import PROMPTER_ERROR_PATTERNS, REPO, free_port, port_is_open

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 1500.0  # install check, two servers, the model's load, 20 predictions and a browser, loaded machine
TYPED_PROMPT = "Which billing intents does the customer have?"


@dataclass
class Demo:
    process: subprocess.Popen
    folder: Path
    screenshot: Path
    ls_port: int
    prompter_port: int
    output: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.output)

    @property
    def credentials(self) -> Credentials:
        return Credentials(**json.loads((self.folder / "credentials.json").read_text()))

    @property
    def ls_url(self) -> str:
        return f"http://127.0.0.1:{self.ls_port}"

    @property
    def prompter_url(self) -> str:
        return f"http://127.0.0.1:{self.prompter_port}"

    def ls(self, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Token {self.credentials.token}"}
        response = httpx.get(f"{self.ls_url}{path}", params=params, headers=headers, timeout=60)
        assert response.status_code == 200, f"GET {path} -> {response.status_code}: {response.text[:500]}"
        return response.json()


def _kill(demo: subprocess.Popen) -> None:
    """A failed check must not leave servers behind: the demo and everything it started."""
    try:
        leader = psutil.Process(demo.pid)
        processes = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=30)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("demo")
    ls_port, prompter_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "service.cli", "demo", "--dir", str(tmp / "demo"),
        "--ls-port", str(ls_port), "--port", str(prompter_port), "--screenshot", str(tmp / "screen.png"),
    ]  # fmt: skip
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    running = Demo(process, tmp / "demo", tmp / "screen.png", ls_port, prompter_port)
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout or []:
            running.output.append(line.rstrip("\n"))
            print(f"[demo] {line}", end="", flush=True)
            if line.startswith("Press Ctrl-C"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        while not ready.wait(1.0):
            if process.poll() is not None:
                pytest.fail("the demo exited early:\n" + running.text)
            if time.monotonic() - started > READY_TIMEOUT:
                pytest.fail("the demo was not ready in time:\n" + running.text)
        print(f"\n[e2e] demo ready (20 predictions, screenshot): {time.monotonic() - started:.1f} s", flush=True)
        yield running
    finally:
        if process.poll() is None:
            _kill(process)
    ls_errors = _log_errors(running.folder / "label-studio" / "label_studio.log", ERROR_PATTERNS)
    prompter_errors = _log_errors(running.folder / "prompter" / "prompter.log", PROMPTER_ERROR_PATTERNS)
    assert not ls_errors and not prompter_errors, (ls_errors, prompter_errors)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def _log_errors(path: Path, patterns: list[re.Pattern]) -> list[str]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [line for line in lines if any(p.search(line) for p in patterns)]


def test_demo_prints_the_url_and_login_of_a_ready_project(demo: Demo) -> None:
    url = re.search(r"^Label Studio: (http://127\.0\.0\.1:(\d+)/projects/(\d+)/data)$", demo.text, re.M)
    login = re.search(r"^Login: +(\S+) +password: (\S+)$", demo.text, re.M)
    assert url and login, demo.text
    assert int(url.group(2)) == demo.ls_port
    assert (login.group(1), login.group(2)) == (demo.credentials.username, demo.credentials.password)
    token = re.search(r"^API token: +(\S+) ", demo.text, re.M)
    assert token and token.group(1) == demo.credentials.token, demo.text
    assert str(demo.folder / "credentials.json") in demo.text  # where the login is kept

    # The project as Label Studio has it: 20 sample chats, each with a prediction, Prompter connected.
    project = demo.ls(f"/api/projects/{url.group(3)}")
    assert project["title"] == "Finance Support Chats" and project["task_number"] == 20, project
    [backend] = demo.ls("/api/ml", project=project["id"])
    assert backend["url"] == demo.prompter_url and backend["is_interactive"], backend
    tasks = demo.ls("/api/tasks", project=project["id"], page_size=100, fields="all")["tasks"]
    assert len(tasks) == 20 and all(len(t["predictions"]) == 1 for t in tasks), [t["predictions"] for t in tasks]
    assert httpx.get(f"{demo.prompter_url}/health", timeout=10).json()["model_state"] == "ready"

    width, height = _png_size(demo.screenshot)
    assert width >= 1000 and height >= 700 and demo.screenshot.stat().st_size > 30_000, (width, height)


def test_shift_enter_in_the_labeling_screen_asks_prompter_with_the_typed_prompt(demo: Demo) -> None:
    """What the README tells a new user to do: Auto-Annotation on, edit the Prompt box, Shift+Enter."""
    from service.demo.screenshot import ask, chromium, log_in, open_labeling

    projects = demo.ls("/api/projects")
    project_id = (projects["results"] if isinstance(projects, dict) else projects)[0]["id"]
    task_id = sorted(t["id"] for t in demo.ls("/api/tasks", project=project_id, page_size=100)["tasks"])[1]
    log = demo.folder / "prompter" / "prompter.log"
    offset = log.stat().st_size

    def new_log() -> str:
        return log.read_bytes()[offset:].decode(errors="replace")

    started = time.monotonic()
    with chromium() as driver:
        log_in(driver, demo.ls_url, demo.credentials)
        open_labeling(driver, f"{demo.ls_url}/projects/{project_id}/data?task={task_id}", demo.folder / "open.png")
        ask(driver, TYPED_PROMPT)
        driver.save_screenshot(str(demo.folder / "shift-enter.png"))
    print(f"\n[e2e] Shift+Enter in the browser, answered: {time.monotonic() - started:.1f} s", flush=True)

    # Prompter got the typed prompt as the interactive context and kept it as a prompt version.
    versions = httpx.get(f"{demo.prompter_url}/projects/{project_id}/prompts", timeout=30).json()
    typed = [v for v in versions if v["text"] == TYPED_PROMPT]
    assert typed and typed[0]["source"] == "annotator" and not typed[0]["is_active"], versions
    assert f"labeled with prompt-{typed[0]['id']}@" in new_log()


def test_ctrl_c_stops_both_servers(demo: Demo) -> None:
    children = psutil.Process(demo.process.pid).children(recursive=True)
    assert children, "the demo's servers should be its child processes"
    demo.process.send_signal(signal.SIGINT)  # what Ctrl-C does: only the demo gets it, it stops its children
    assert demo.process.wait(timeout=90) == 0, demo.text
    deadline = time.monotonic() + 10
    while demo.output[-1:] != ["Label Studio and Prompter stopped."] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert demo.output[-1] == "Label Studio and Prompter stopped.", demo.output[-5:]
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"still running after the demo stopped: {alive}"
    assert not port_is_open(demo.ls_port) and not port_is_open(demo.prompter_port)
