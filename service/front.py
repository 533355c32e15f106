"""`prompter serve`'s front process: it owns the port, answers ``GET /health`` and ``GET /`` from memory at once, and
passes every other request through to the backend (the app with the model) on a Unix socket.

Why a second process: the backend's event loop shares one GIL with model loading, warm-up, batches, refinements and
evaluations. Measured on this project's 2-core machine (busy, load 5-8) with the loop in the same process: parsing
the embedded model's 33 MB tokenizer holds the GIL 1.5 s in single C calls (``json.loads``, the Rust tokenizer's
``from_file``), and building the outlines/llguidance generator another 2.8 s, so ``/health`` took 1.2-7.5 s during a
start, past Label Studio's 1 s. The front imports no torch and never waits on the backend to answer ``/health``: a
background task mirrors the backend's own ``/health`` every ``POLL_S``, and the front answers from that copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from service.api.auth import require_basic_auth
from service.api.protocol import HealthResponse
from service.healthcheck import auth_headers

log = logging.getLogger(__name__)

POLL_S = 0.25  # how stale the mirrored model state may be
POLL_TIMEOUT_S = 5.0  # a backend busy past this keeps its last known state
STOP_GRACE_S = 10.0
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade"}  # fmt: skip
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the backend, before exec: SIGTERM it when the front dies, even by SIGKILL (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_backend(socket_path: Path, log_level: str, host: str) -> subprocess.Popen:
    """`prompter serve --uds PATH`: the whole app with the model, in the front's process group (Ctrl-C reaches it).

    ``host`` is where the front listens: the backend's review rule and Host check depend on it."""
    command = [sys.executable, "-m", "service.cli", "serve", "--uds", str(socket_path), "--log-level", log_level]
    command += ["--host", host]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)  # noqa: PLW1509


def stop_backend(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class Mirror:
    """The backend's latest ``/health`` answer; "loading" until it has answered once."""

    def __init__(
        self, client: httpx.AsyncClient, backend: subprocess.Popen, on_backend_exit: Callable[[], None]
    ) -> None:
        self.client = client
        self.backend = backend
        self.on_backend_exit = on_backend_exit
        self.health = HealthResponse(model_state="loading")
        self.backend_exit: int | None = None  # set when the backend died on its own

    async def follow(self) -> None:
        while True:
            code = self.backend.poll()
            if code is not None:
                self.health = HealthResponse(model_state="error", model_error=f"the backend exited with code {code}")
                self.backend_exit = code
                log.error("the backend process exited with code %s; stopping", code)
                self.on_backend_exit()  # the front shuts down and exits 1; a supervisor may restart it
                return
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = await self.client.get("/health", timeout=POLL_TIMEOUT_S, headers=auth_headers())
                if response.status_code == 200:
                    self.health = HealthResponse.model_validate(response.json())
            await asyncio.sleep(POLL_S)


def create_front(
    socket_path: Path, on_backend_exit: Callable[[], None], log_level: str = "info", host: str = "127.0.0.1"
) -> FastAPI:
    """The front app; ``on_backend_exit`` stops its server (uvicorn's ``should_exit``) when the backend dies."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per poll
    transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
    # a loopback name: the backend answers loopback names only, when Prompter listens on loopback (DNS rebinding)
    client = httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=None, limits=limits)
    state: dict[str, Mirror] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        backend = start_backend(socket_path, log_level, host)
        mirror = state["mirror"] = app.state.mirror = Mirror(client, backend, on_backend_exit)
        task = asyncio.create_task(mirror.follow())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.to_thread(stop_backend, backend)
            await client.aclose()
            shutil.rmtree(socket_path.parent, ignore_errors=True)

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get("/health", dependencies=[Depends(require_basic_auth)])
    @app.get("/", dependencies=[Depends(require_basic_auth)])
    async def health() -> HealthResponse:
        return state["mirror"].health

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def forward(request: Request) -> Response:
        headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
        url = httpx.URL(path=request.url.path, query=request.url.query.encode())
        outgoing = client.build_request(request.method, url, headers=headers, content=request.stream())
        try:
            answer = await client.send(outgoing, stream=True)
        except httpx.ConnectError:  # the backend is not listening yet (it imports torch first) or has just died
            return JSONResponse(
                status_code=503,
                content={"detail": "the backend is starting; retry in a few seconds"},
                headers={"Retry-After": "5"},
            )
        kept = [(k, v) for k, v in answer.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
        response = StreamingResponse(answer.aiter_raw(), status_code=answer.status_code,
                                     background=BackgroundTask(answer.aclose))  # fmt: skip
        response.raw_headers = [(k.lower(), v) for k, v in kept]
        return response

    return app


def socket_path() -> Path:
    """A fresh private folder for the backend's Unix socket."""
    return Path(tempfile.mkdtemp(prefix="prompter-")) / "backend.sock"
