"""Probe a server's ``GET /health`` at a fixed interval from a thread and keep every answer's latency.

Label Studio gives ``/health`` 1 s (``ML_TIMEOUT_HEALTH``) before it reads the backend as down. Each probe opens a
new connection, as Label Studio's client does; a probe waits up to ``timeout`` so that a stall is measured, not cut.
Probes before the server first answers (nothing listening yet) are counted apart: they are not answers.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Probe:
    at: float  # seconds since the prober started
    seconds: float  # how long the answer took (up to the timeout)
    outcome: str  # "ready", "loading", "error" (model_state), an HTTP status, or the transport error's name
    phase: str  # what the caller said was going on ("start", "batch", ...)


@dataclass
class HealthProber:
    url: str
    interval: float = 0.1
    timeout: float = 10.0
    auth: tuple[str, str] | None = None
    phase: str = "start"
    probes: list[Probe] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0

    def start(self) -> HealthProber:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="health-prober", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)

    def _run(self) -> None:
        # no keep-alive: a new connection per probe, as Label Studio's client makes
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=self.timeout, auth=self.auth, limits=limits) as client:
            while not self._stop.is_set():
                began = time.monotonic()
                outcome = self._once(client)
                took = time.monotonic() - began
                self.probes.append(Probe(began - self._started, took, outcome, self.phase))
                self._stop.wait(max(0.0, self.interval - took))

    def _once(self, client: httpx.Client) -> str:
        try:
            response = client.get(f"{self.url}/health")
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if response.status_code != 200:
            return str(response.status_code)
        try:
            return str(response.json().get("model_state"))
        except ValueError:
            return "not json"

    def answers(self, phase: str | None = None) -> list[Probe]:
        """Probes the server answered (any HTTP status), from its first answer on; of one phase if given."""
        first = next((i for i, p in enumerate(self.probes) if p.outcome not in _NOT_LISTENING), len(self.probes))
        return [p for p in self.probes[first:] if phase is None or p.phase == phase]

    def summary(self, phase: str | None = None) -> dict[str, float | int]:
        probes = self.answers(phase)
        seconds = sorted(p.seconds for p in probes)
        failed = [p for p in probes if p.outcome not in ("ready", "loading")]
        return {
            "count": len(seconds),
            "max_s": round(seconds[-1], 4) if seconds else math.nan,
            "p99_s": round(percentile(seconds, 0.99), 4) if seconds else math.nan,
            "p50_s": round(percentile(seconds, 0.5), 4) if seconds else math.nan,
            "over_1s": sum(s > 1.0 for s in seconds),
            "failed": len(failed),
        }


_NOT_LISTENING = ("ConnectError",)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]
