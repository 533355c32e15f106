"""`prompter demo` as a new user runs it: both servers up, the project ready, a screenshot, Ctrl-C stops both."""

from __future__ import annotations

import json
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from service.labelstudio import ERROR_PATTERNS
from service.processes import PROMPTER_ERROR_PATTERNS, REPO, free_port, port_is_open

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 1200.0  # install check, two servers, the model's load and one /predict on a loaded machine


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def _log_errors(path: Path, patterns: list[re.Pattern]) -> list[str]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [line for line in lines if any(p.search(line) for p in patterns)]


def test_demo_starts_both_servers_with_a_ready_project_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    ls_port, prompter_port = free_port(), free_port()
    screenshot = tmp_path / "screen.png"
    command = [
        sys.executable, "-m", "service.cli", "demo", "--dir", str(tmp_path / "demo"),
        "--ls-port", str(ls_port), "--port", str(prompter_port), "--screenshot", str(screenshot),
    ]  # fmt: skip
    started = time.monotonic()
    demo = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in demo.stdout or []:
            output.append(line.rstrip("\n"))
            print(f"[demo] {line}", end="", flush=True)
            if line.startswith("Press Ctrl-C"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while not ready.wait(1.0):
            assert demo.poll() is None, "the demo exited early:\n" + "\n".join(output)
            assert time.monotonic() - started < READY_TIMEOUT, "the demo was not ready in time:\n" + "\n".join(output)
        print(f"\n[e2e] demo ready (with screenshot): {time.monotonic() - started:.1f} s", flush=True)
        text = "\n".join(output)
        url = re.search(r"^Label Studio: (http://127\.0\.0\.1:(\d+)/projects/(\d+)/data)$", text, re.M)
        login = re.search(r"^Login: +(\S+) +password: (\S+)$", text, re.M)
        assert url and login, text
        assert int(url.group(2)) == ls_port
        credentials = json.loads((tmp_path / "demo" / "credentials.json").read_text())
        assert (login.group(1), login.group(2)) == (credentials["username"], credentials["password"])

        # The project as Label Studio has it: 20 sample chats, Prompter connected with interactive on.
        headers = {"Authorization": f"Token {credentials['token']}"}
        base = f"http://127.0.0.1:{ls_port}"
        project = httpx.get(f"{base}/api/projects/{url.group(3)}", headers=headers, timeout=30).json()
        assert project["title"] == "Finance Support Chats" and project["task_number"] == 20, project
        [backend] = httpx.get(f"{base}/api/ml", params={"project": project["id"]}, headers=headers, timeout=30).json()
        assert backend["url"] == f"http://127.0.0.1:{prompter_port}" and backend["is_interactive"], backend
        assert backend["state"] in ("CO", "PR"), backend
        assert httpx.get(f"{backend['url']}/health", timeout=10).json()["model_state"] == "ready"

        width, height = _png_size(screenshot)
        assert width >= 1000 and height >= 700 and screenshot.stat().st_size > 30_000, (width, height)

        children = psutil.Process(demo.pid).children(recursive=True)
        assert children, "the demo's servers should be its child processes"
        demo.send_signal(signal.SIGINT)  # what Ctrl-C does: only the demo gets it, it stops its children
        assert demo.wait(timeout=90) == 0, "\n".join(output)
        reader.join(timeout=10)
        assert output[-1] == "Label Studio and Prompter stopped.", output[-5:]
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"still running after the demo stopped: {alive}"
        assert not port_is_open(ls_port) and not port_is_open(prompter_port)
    finally:
        if demo.poll() is None:  # a failed check must not leave servers behind
            leftovers = psutil.Process(demo.pid).children(recursive=True)
            for process in [psutil.Process(demo.pid), *leftovers]:
                process.kill()
            psutil.wait_procs([psutil.Process(demo.pid), *leftovers], timeout=30)

    ls_errors = _log_errors(tmp_path / "demo" / "label-studio" / "label_studio.log", ERROR_PATTERNS)
    prompter_errors = _log_errors(tmp_path / "demo" / "prompter" / "prompter.log", PROMPTER_ERROR_PATTERNS)
    assert not ls_errors and not prompter_errors, (ls_errors, prompter_errors)
