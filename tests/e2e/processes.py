"""Small helpers for the servers end-to-end tests run as subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


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
