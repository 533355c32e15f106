"""Request latencies per route, kept in memory (the last few hundred per route) for /metrics."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

WINDOW = 500


class Latencies:
    def __init__(self, window: int = WINDOW) -> None:
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, route: str, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(route, deque(maxlen=self._window)).append(seconds)
            self._counts[route] = self._counts.get(route, 0) + 1

    def summary(self) -> dict[str, dict[str, float | int]]:
        with self._lock:
            snapshot = {route: sorted(values) for route, values in self._samples.items()}
            counts = dict(self._counts)
        return {
            route: {
                "count": counts[route],
                "p50_s": round(_quantile(values, 0.5), 6),
                "p95_s": round(_quantile(values, 0.95), 6),
            }
            for route, values in sorted(snapshot.items())
        }

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()
            self._counts.clear()


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


latencies = Latencies()


class LatencyMiddleware:
    """Times each HTTP request to its last body byte and files it under "METHOD /route/template"."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                latencies.record(_route_name(scope), time.perf_counter() - started)

        await self.app(scope, receive, timed_send)


def _route_name(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None) or "unmatched"  # never the raw path: unbounded keys
    return f"{scope.get('method', '?')} {path}"
