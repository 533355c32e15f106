"""What the load test measures: each call's outcome and latency, and the server's memory (its process tree)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

Outcome = int | str  # an HTTP status, or the name of the transport error


@dataclass
class Call:
    kind: str  # "interactive", "batch" or "webhook"
    outcome: Outcome
    seconds: float
    retry_after: str | None = None
    body: Any = None
    ref: int | None = None  # what was sent, e.g. the annotation id of a webhook


def post(client: httpx.Client, kind: str, path: str, body: dict[str, Any], ref: int | None = None) -> Call:
    """POST once; a transport error (timeout, reset) is an outcome too, never an exception."""
    started = time.perf_counter()
    try:
        response = client.post(path, json=body)
    except httpx.HTTPError as exc:
        return Call(kind, type(exc).__name__, time.perf_counter() - started, ref=ref)
    seconds = time.perf_counter() - started
    try:
        payload = response.json()
    except ValueError:
        payload = response.text
    return Call(kind, response.status_code, seconds, response.headers.get("retry-after"), payload, ref)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100, inclusive method); None without values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (all their threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/<pid>/task/<tid>/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except (OSError, ValueError):
                continue
    return found


@dataclass
class MemorySampler:
    """Samples the summed VmRSS of a process tree every ``interval`` s; ``peak_mib`` also counts each
    process's own high-water mark (VmHWM), so a spike between samples is not missed."""

    pid: int
    interval: float = 0.25
    peak_rss_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss_kib = max(self.peak_rss_kib, sum(_status_kib(p, "VmRSS") for p in process_tree(self.pid)))
            self._stop.wait(self.interval)

    def stop(self) -> float:
        """Stop sampling (before the server stops); the peak in MiB."""
        hwm = sum(_status_kib(p, "VmHWM") for p in process_tree(self.pid))
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return max(self.peak_rss_kib, hwm) / 1024
