"""Browser fixtures: Prompter served by uvicorn in a thread over the test's database, and headless Chromium.

Chromium and its driver are Debian's (`chromium`, `chromium-driver`; scripts/install_test_deps.sh installs
them). Selenium is pointed at both binaries, so nothing is downloaded.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from service.api.app import create_app
from service.settings import settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1200",
]
USER, PASSWORD = "reviewer", "s3cret pass"


@dataclass
class Served:
    url: str  # http://127.0.0.1:<port>, no credentials
    auth: tuple[str, str]

    def page(self, path: str) -> str:
        """The address with the basic-auth credentials in it, as a browser takes them."""
        host = self.url.removeprefix("http://")
        return f"http://{self.auth[0]}:{self.auth[1].replace(' ', '%20')}@{host}{path}"


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port: its ``http://127.0.0.1:<port>``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def served(db_url: str, tiny_engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The app behind basic auth on a free loopback port, in a thread; stopped after the test."""
    monkeypatch.setattr(settings, "basic_auth_user", USER)
    monkeypatch.setattr(settings, "basic_auth_pass", PASSWORD)
    monkeypatch.setattr(settings, "host", "127.0.0.1")
    with serving(create_app(engine=tiny_engine)) as url:
        yield Served(url, (USER, PASSWORD))


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[object]:
    """A headless Chromium driven by selenium, with a fresh profile; its console log is kept. Parametrized
    indirectly, the parameter is a list of extra command-line flags."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            pytest.skip(f"{binary} is missing: scripts/install_test_deps.sh installs chromium and chromium-driver")
    profile = tempfile.mkdtemp(prefix="prompter-review-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, *getattr(request, "param", []), f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(autouse=True)
def _model_only(model_only_decisions: None) -> None:
    """The review page is driven by the agent's loop on CopyEngine, whose mistakes the loop must fix."""
