"""Servers run as child processes (`prompter serve`, Label Studio): start, wait until ready, stop, read logs.

Used by `prompter demo` and by the end-to-end tests. Each server runs in its own process group, so a
Ctrl-C in the terminal reaches only the parent, which then stops its children in order.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Self

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def stop_process_group(process: subprocess.Popen, grace_seconds: float = 10.0) -> None:
    """SIGTERM the process group started with start_new_session=True, then SIGKILL what is left."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)
    # Children may outlive the leader: kill the whole group either way.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return "<no log>"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
    interval: float = 0.5,
) -> None:
    """Poll `condition` until true; fail early if `process` dies, with the log's tail in the message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = tail(log_path) if log_path else ""
            raise RuntimeError(f"{what}: process exited with code {process.returncode}\n{log}")
        if condition():
            return
        time.sleep(interval)
    log = tail(log_path) if log_path else ""
    raise TimeoutError(f"{what}: not reached within {timeout:.0f} s\n{log}")


def read_log(path: Path, since: int = 0) -> str:
    """The log's text from byte offset `since` on ("" if there is no log yet)."""
    if not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(since)
        return log.read().decode(errors="replace")


def log_size(path: Path) -> int:
    """A position in a log, to read only what comes after it."""
    return path.stat().st_size if path.exists() else 0


PROMPTER_ERROR_PATTERNS = [
    re.compile(p) for p in (r"Traceback \(most recent call last\)", r"\bERROR\b", r"\bCRITICAL\b", r"HTTP/1\.1\" 5\d\d")
]


class PrompterServer:
    """`prompter serve` on loopback as a child process: `with PrompterServer(workdir) as p: p.url`.

    `start()` returns once the model is loaded; `launch()` + `wait_ready()` let the caller do other
    work (start Label Studio) while the model loads. `extra_env` adds to its environment, e.g.
    {"BASIC_AUTH_USER": ..., "BASIC_AUTH_PASS": ...}.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        ready_timeout: float = 300.0,
        extra_env: dict[str, str] | None = None,
        database_path: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.ready_timeout = ready_timeout
        self.extra_env = dict(extra_env or {})
        self.log_path = self.workdir / "prompter.log"
        self.database_path = database_path or self.workdir / "prompter.sqlite3"
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None
        self._started_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen | None:
        return self._process

    @property
    def auth(self) -> tuple[str, str] | None:
        user, password = self.extra_env.get("BASIC_AUTH_USER"), self.extra_env.get("BASIC_AUTH_PASS")
        return (user, password) if user and password else None

    def launch(self) -> Self:
        """Start the process; the model loads in the background."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if port_is_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use: choose another one for Prompter")
        env = dict(os.environ)
        env.update(
            PROMPTER_DATABASE_URL=f"sqlite:///{self.database_path}",
            PROMPTER_HOST="127.0.0.1",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self._started_at = time.monotonic()
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self) -> Self:
        """Block until /health says the model is ready; RuntimeError if it failed to load or the process died."""
        try:
            wait_until(
                self._ready, self.ready_timeout, "prompter /health model_state=ready", self._process,
                self.log_path, interval=1.0,
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - (self._started_at or time.monotonic())
        return self

    def start(self) -> Self:
        return self.launch().wait_ready()

    def stop(self) -> None:
        if self._process is not None:
            stop_process_group(self._process)
            self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def health(self) -> dict | None:
        try:
            response = httpx.get(f"{self.url}/health", timeout=2, auth=self.auth)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def _ready(self) -> bool:
        health = self.health()
        if health is None:
            return False
        if health.get("model_state") == "error":
            raise RuntimeError(f"prompter's model failed to load: {health.get('model_error')}\n{self.log_tail()}")
        return health.get("model_state") == "ready"

    def log_size(self) -> int:
        return log_size(self.log_path)

    def log_text(self, since: int = 0) -> str:
        return read_log(self.log_path, since)

    def log_errors(self, since: int = 0) -> list[str]:
        """Lines showing a failure (traceback, ERROR, a 5xx answered) from byte offset `since` on."""
        lines = read_log(self.log_path, since).splitlines()
        return [line for line in lines if any(p.search(line) for p in PROMPTER_ERROR_PATTERNS)]

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)
