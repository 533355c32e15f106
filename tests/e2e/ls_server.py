"""A real Label Studio server for end-to-end tests, started from a migrated template database.

`scripts/install_label_studio.sh` installs Label Studio into its own virtual environment and migrates a
template SQLite database once (with the test user and its legacy API token already in it). Each
`LabelStudioServer` copies that database into a fresh data directory and is healthy in a few seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
from processes import free_port, port_is_open, stop_process_group, tail, wait_until

DEFAULT_VENV = Path.home() / ".cache" / "prompter" / "ls-venv"
DEFAULT_TEMPLATE = Path.home() / ".cache" / "prompter" / "ls-template"
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install_label_studio.sh"

# Where Label Studio prints the port it really bound: it silently moves on to the next one if busy.
_BOUND_PORT = re.compile(r"Starting development server at http://127\.0\.0\.1:(\d+)/")

# Lines of Label Studio's log that tell an ML backend call failed. LS reports a failed /predict as
# success to the client and logs some failures at INFO only, so tests must read the log.
_ERROR_PATTERNS = [
    re.compile(p)
    for p in (
        r"\[ERROR\]",
        r"Traceback \(most recent call last\)",
        r"Server Error for url",
        r"Client Error for url",
        r"ML backend responds with error",
        r"ML backend returns an incorrect",
        r"ML backend has to return",
        r"Prediction not created",
        r"Num input tasks is \d+ but ML API returns",
        r"doesn't support batch processing",
        r"Number of tasks and responses are not equal",
        r"Can't collect training jobs",
        r"HTTP/1\.1\" 5\d\d ",
    )
]


def venv_dir() -> Path:
    return Path(os.environ.get("PROMPTER_LS_VENV", DEFAULT_VENV))


def template_dir() -> Path:
    return Path(os.environ.get("PROMPTER_LS_TEMPLATE", DEFAULT_TEMPLATE))


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str


def template_credentials(template: Path) -> Credentials:
    """The user baked into the template database by the install script.

    Label Studio only creates the user (and sets its token) when the user does not exist yet; on the
    template copy it prints "User ... already exists" and keeps the stored token, so the server must be
    addressed with the template's token, not a new one.
    """
    data = json.loads((template / "credentials.json").read_text())
    token = data["token"]
    if not re.fullmatch(r"[0-9a-f]{40}", token):
        raise ValueError(f"template token must be 40 hex characters, got {token!r}")
    return Credentials(username=data["username"], password=data["password"], token=token)


class LabelStudioServer:
    """`with LabelStudioServer(workdir) as ls: ls.api("GET", "/api/projects")`."""

    def __init__(
        self,
        workdir: Path,
        *,
        venv: Path | None = None,
        template: Path | None = None,
        port: int | None = None,
        startup_timeout: float = 180.0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """`extra_env` adds to Label Studio's environment, e.g. {"ML_TIMEOUT_PREDICT": "300"}."""
        self.workdir = Path(workdir)
        self.venv = venv or venv_dir()
        self.template = template or template_dir()
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self.extra_env = dict(extra_env or {})
        self.data_dir = self.workdir / "data"
        self.home_dir = self.workdir / "home"
        self.log_path = self.workdir / "label_studio.log"
        self.credentials = template_credentials(self.template)
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen | None = None
        self._log_file = None
        self._client: httpx.Client | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        executable = self.venv / "bin" / "label-studio"
        template_db = self.template / "label_studio.sqlite3"
        if not executable.exists() or not template_db.exists():
            raise RuntimeError(
                f"Label Studio is not installed ({executable}) or has no template database ({template_db}): "
                f"run `bash {INSTALL_SCRIPT}`"
            )
        if port_is_open(6379):
            raise RuntimeError(
                "something listens on localhost:6379: Label Studio would queue jobs for workers that never run"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.home_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(template_db, self.data_dir / "label_studio.sqlite3")

        port = self.requested_port or free_port()
        command = [
            str(executable), "start", "--no-browser",
            "--internal-host", "127.0.0.1", "--port", str(port),
            "--username", self.credentials.username,
            "--password", self.credentials.password,
            "--user-token", self.credentials.token,
            "--enable-legacy-api-token",
        ]  # fmt: skip
        started = time.monotonic()
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=self._environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: self._bound_port() is not None,
                self.startup_timeout,
                "Label Studio announcing its port",
                self._process,
                self.log_path,
            )
            self.port = self._bound_port()
            wait_until(self._healthy, 60, "Label Studio /health", self._process, self.log_path)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {self.token}"},
            timeout=httpx.Timeout(120.0, connect=5.0),
        )
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
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

    def _environment(self) -> dict[str, str]:
        """A clean environment: LS reads USERNAME, PASSWORD, HOST, PORT and any LABEL_STUDIO_*/HEARTEX_*."""
        keep = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env.update(
            HOME=str(self.home_dir),
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir),
            DJANGO_DB="sqlite",
            SENTRY_DSN="",
            FRONTEND_SENTRY_DSN="",
            LATEST_VERSION_CHECK="false",
            COLLECT_ANALYTICS="false",
            ML_BLOCK_LOCAL_IP="false",
            SSRF_PROTECTION_ENABLED="false",
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
            # LS logs some ML backend failures at INFO ("ML backend responds with error", "Prediction not
            # created"), and its default level is WARNING.
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def _bound_port(self) -> int | None:
        if not self.log_path.exists():
            return None
        ports = _BOUND_PORT.findall(self.log_path.read_text(errors="replace"))
        return int(ports[-1]) if ports else None

    def _healthy(self) -> bool:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("status") == "UP"

    # --- use ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("Label Studio is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return self.credentials.token

    def api(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        expect: int | tuple[int, ...] | None = None,
    ) -> httpx.Response:
        """Call the REST API with the user's token; with `expect`, assert the status code."""
        if self._client is None:
            raise RuntimeError("Label Studio is not started")
        response = self._client.request(method, path, json=json, params=params)
        if expect is not None:
            expected = (expect,) if isinstance(expect, int) else expect
            assert response.status_code in expected, (
                f"{method} {path} -> {response.status_code}, expected {expected}: {response.text[:2000]}"
            )
        return response

    # --- log ------------------------------------------------------------------------------------

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_size(self) -> int:
        """A position in the log, to read only what came after it with log_errors(since=...)."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_errors(self, since: int = 0) -> list[str]:
        """Log lines that show an ML backend (or Label Studio) failure, from byte offset `since` on."""
        if not self.log_path.exists():
            return []
        with self.log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        # LS prints each django.server line twice (its own handler and the root's): keep one of each.
        matches = [line for line in text.splitlines() if any(p.search(line) for p in _ERROR_PATTERNS)]
        return list(dict.fromkeys(matches))

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)
