"""`prompter serve` as a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx
from processes import free_port, stop_process_group, tail, wait_until

REPO = Path(__file__).resolve().parents[2]

_ERROR_PATTERNS = [
    re.compile(p) for p in (r"Traceback \(most recent call last\)", r"\bERROR\b", r"\bCRITICAL\b", r"HTTP/1\.1\" 5\d\d")
]


class PrompterServer:
    """`with PrompterServer(workdir) as prompter: prompter.url` -> a backend whose model is loaded."""

    def __init__(self, workdir: Path, *, port: int | None = None, ready_timeout: float = 300.0) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.ready_timeout = ready_timeout
        self.log_path = self.workdir / "prompter.log"
        self.database_path = self.workdir / "prompter.sqlite3"
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            PROMPTER_DATABASE_URL=f"sqlite:///{self.database_path}",
            PROMPTER_HOST="127.0.0.1",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)]
        started = time.monotonic()
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
        try:
            wait_until(
                self._ready, self.ready_timeout, "prompter /health model_state=ready", self._process,
                self.log_path, interval=1.0,
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

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

    def _ready(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/health", timeout=2)
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        try:
            health = response.json()
        except ValueError:
            return False
        if health.get("model_state") == "error":
            raise RuntimeError(f"prompter's model failed to load: {health.get('model_error')}\n{self.log_tail()}")
        return health.get("model_state") == "ready"

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_errors(self, since: int = 0) -> list[str]:
        if not self.log_path.exists():
            return []
        with self.log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        return [line for line in text.splitlines() if any(p.search(line) for p in _ERROR_PATTERNS)]

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)
