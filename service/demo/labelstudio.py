"""A real Label Studio 1.23 server on loopback, and the REST calls that drive the ML backend workflow.

`scripts/install_label_studio.sh` installs Label Studio into its own virtual environment (it pins its
own label-studio-sdk) and migrates a template SQLite database once. Each `LabelStudioServer` copies
that database into a fresh data directory (or reuses one it made before) and is healthy in seconds.
Used by `prompter demo` and by the end-to-end tests.
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
from typing import IO, Any, Self

import httpx

from constraints.errors import PrompterError
from service.demo.processes import (
    REPO,
    free_port,
    log_size,
    port_is_open,
    read_log,
    stop_process_group,
    tail,
    wait_until,
)

DEFAULT_VENV = Path.home() / ".cache" / "prompter" / "ls-venv"
DEFAULT_TEMPLATE = Path.home() / ".cache" / "prompter" / "ls-template"
INSTALL_SCRIPT = REPO / "scripts" / "install_label_studio.sh"

# Where Label Studio prints the port it really bound: it silently moves on to the next one if busy.
_BOUND_PORT = re.compile(r"Starting development server at http://127\.0\.0\.1:(\d+)/")

# Lines of Label Studio's log that tell an ML backend call failed. LS reports a failed /predict as
# success to the client and logs some failures at INFO only, so its log must be read.
ERROR_PATTERNS = [
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


class LabelStudioError(PrompterError):
    """A Label Studio API call answered something other than what the workflow needs."""


def venv_dir() -> Path:
    return Path(os.environ.get("PROMPTER_LS_VENV", DEFAULT_VENV))


def template_dir() -> Path:
    return Path(os.environ.get("PROMPTER_LS_TEMPLATE", DEFAULT_TEMPLATE))


def is_installed(venv: Path | None = None, template: Path | None = None) -> bool:
    venv, template = venv or venv_dir(), template or template_dir()
    return (venv / "bin" / "label-studio").exists() and (template / "label_studio.sqlite3").exists()


def install(timeout: float = 1500.0) -> subprocess.CompletedProcess[str]:
    """Run the idempotent install script (a second run only checks the version and the template)."""
    if not INSTALL_SCRIPT.exists():
        raise RuntimeError(f"{INSTALL_SCRIPT} not found: run Prompter from its source checkout to install Label Studio")
    return subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=timeout, check=False)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str


def template_credentials(template: Path) -> Credentials:
    """The user baked into the template database by the install script.

    Label Studio only creates the user (and sets its token) when the user does not exist yet; on the
    template copy it prints "User ... already exists" and keeps the stored token, so the server must be
    addressed with the template's token, not a new one. Other credentials create a second user.
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
        credentials: Credentials | None = None,
    ) -> None:
        """`extra_env` adds to Label Studio's environment, e.g. {"ML_TIMEOUT_PREDICT": "300"}.

        `credentials` other than the template's create that user (superuser, same organization) on first
        start; an existing `workdir/data/label_studio.sqlite3` is reused, not replaced by the template.
        """
        self.workdir = Path(workdir)
        self.venv = venv or venv_dir()
        self.template = template or template_dir()
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self.extra_env = dict(extra_env or {})
        self.data_dir = self.workdir / "data"
        self.home_dir = self.workdir / "home"
        self.log_path = self.workdir / "label_studio.log"
        self.credentials = credentials or template_credentials(self.template)
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None
        self._client: httpx.Client | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def process(self) -> subprocess.Popen | None:
        return self._process

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
        if self.requested_port and port_is_open(self.requested_port):
            raise RuntimeError(f"port {self.requested_port} is already in use: choose another one for Label Studio")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.home_dir.mkdir(parents=True, exist_ok=True)
        database = self.data_dir / "label_studio.sqlite3"
        if not database.exists():
            shutil.copy2(template_db, database)

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
        log_offset = log_size(self.log_path)
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
                lambda: self._bound_port(log_offset) is not None,
                self.startup_timeout,
                "Label Studio announcing its port",
                self._process,
                self.log_path,
            )
            self.port = self._bound_port(log_offset)
            wait_until(self._healthy, 60, "Label Studio /health", self._process, self.log_path)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {self.token}"},
            timeout=httpx.Timeout(600.0, connect=5.0),
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
            # Both are needed for an ML backend (and its webhook) on 127.0.0.1.
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

    def _bound_port(self, since: int = 0) -> int | None:
        ports = _BOUND_PORT.findall(read_log(self.log_path, since))
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
        """Call the REST API with the user's token; with `expect`, LabelStudioError on another status."""
        if self._client is None:
            raise RuntimeError("Label Studio is not started")
        response = self._client.request(method, path, json=json, params=params)
        if expect is not None:
            expected = (expect,) if isinstance(expect, int) else expect
            if response.status_code not in expected:
                raise LabelStudioError(
                    f"{method} {path} -> {response.status_code}, expected {expected}: {response.text[:2000]}"
                )
        return response

    # --- log ------------------------------------------------------------------------------------

    def log_text(self, since: int = 0) -> str:
        return read_log(self.log_path, since)

    def log_size(self) -> int:
        """A position in the log, to read only what came after it with log_errors(since=...)."""
        return log_size(self.log_path)

    def log_errors(self, since: int = 0) -> list[str]:
        """Log lines that show an ML backend (or Label Studio) failure, from byte offset `since` on."""
        text = read_log(self.log_path, since)
        # LS prints each django.server line twice (its own handler and the root's): keep one of each.
        matches = [line for line in text.splitlines() if any(p.search(line) for p in ERROR_PATTERNS)]
        return list(dict.fromkeys(matches))

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)


@dataclass
class LabelStudioAPI:
    """The REST calls of the ML backend workflow, each checking its status code."""

    server: LabelStudioServer

    def create_project(self, title: str, label_config: str, **fields: Any) -> dict[str, Any]:
        body = {"title": title, "label_config": label_config, **fields}
        return self.server.api("POST", "/api/projects", json=body, expect=201).json()

    def find_project(self, title: str) -> dict[str, Any] | None:
        """The first project with this title, or None."""
        response = self.server.api("GET", "/api/projects", params={"title": title, "page_size": 1000}, expect=200)
        body = response.json()
        projects = body.get("results", []) if isinstance(body, dict) else body
        return next((p for p in projects if p.get("title") == title), None)

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Import `[{"data": {...}}, ...]`; returns the new task ids in import order."""
        response = self.server.api("POST", f"/api/projects/{project_id}/import", json=tasks, expect=201)
        body = response.json()
        if body.get("task_count") != len(tasks):
            raise LabelStudioError(f"imported {body} instead of {len(tasks)} tasks")
        return self.task_ids(project_id)[-len(tasks) :]

    def task_ids(self, project_id: int) -> list[int]:
        response = self.server.api(
            "GET", "/api/tasks", params={"project": project_id, "page_size": 10000, "fields": "all"}, expect=200
        )
        return sorted(task["id"] for task in response.json()["tasks"])

    def get_task(self, task_id: int) -> dict[str, Any]:
        return self.server.api("GET", f"/api/tasks/{task_id}", expect=200).json()

    def connect_ml_backend(
        self, project_id: int, url: str, title: str = "Prompter", is_interactive: bool = True, **fields: Any
    ) -> dict[str, Any]:
        """Add the backend: LS calls its /health and /setup and creates a /webhook for all actions.

        `fields` may carry `auth_method="BASIC_AUTH", basic_auth_user=..., basic_auth_pass=...`.
        """
        body = {"url": url, "project": project_id, "is_interactive": is_interactive, "title": title, **fields}
        backend = self.server.api("POST", "/api/ml", json=body, expect=201).json()
        if backend.get("state") != "CO":
            raise LabelStudioError(f"ML backend not connected: {backend}")
        return backend

    def ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        return self.server.api("GET", "/api/ml", params={"project": project_id}, expect=200).json()

    def get_ml_backend(self, ml_id: int) -> dict[str, Any]:
        return self.server.api("GET", f"/api/ml/{ml_id}", expect=200).json()

    def update_ml_backend(self, ml_id: int, **fields: Any) -> dict[str, Any]:
        """PATCH the connection (LS checks /health and /setup again)."""
        return self.server.api("PATCH", f"/api/ml/{ml_id}", json=fields, expect=200).json()

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        return self.server.api("GET", "/api/webhooks", params={"project": project_id}, expect=200).json()

    def update_webhook(self, webhook_id: int, **fields: Any) -> dict[str, Any]:
        return self.server.api("PATCH", f"/api/webhooks/{webhook_id}", json=fields, expect=200).json()

    def retrieve_predictions(self, project_id: int, task_ids: list[int]) -> dict[str, Any]:
        """The Data Manager's "Retrieve predictions" action: one /predict call for all the tasks.

        LS answers success even when /predict failed: check predictions or the log afterwards.
        """
        response = self.server.api(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": {"all": False, "included": task_ids}},
            expect=200,
        )
        return response.json()

    def interactive_annotating(self, ml_id: int, task_id: int, context: dict[str, Any]) -> dict[str, Any]:
        """What the labeling UI sends on Shift+Enter; LS returns `{"data": results[0]}` or `{"errors": [...]}`."""
        response = self.server.api(
            "POST",
            f"/api/ml/{ml_id}/interactive-annotating",
            json={"task": task_id, "context": context},
            expect=200,
        )
        body = response.json()
        if "errors" in body:
            raise LabelStudioError(f"interactive annotating failed: {body['errors']}")
        return body

    def create_annotation(self, task_id: int, result: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """Save an annotation; LS delivers ANNOTATION_CREATED to the backend's /webhook before answering."""
        response = self.server.api(
            "POST", f"/api/tasks/{task_id}/annotations", json={"result": result, **extra}, expect=201
        )
        return response.json()

    def update_annotation(self, annotation_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        response = self.server.api("PATCH", f"/api/annotations/{annotation_id}", json={"result": result}, expect=200)
        return response.json()

    def list_predictions(self, task_id: int) -> list[dict[str, Any]]:
        return self.server.api("GET", "/api/predictions", params={"task": task_id}, expect=200).json()

    def train(self, ml_id: int) -> dict[str, Any] | None:
        """The project's "Start training" button: START_TRAINING reaches the backend's /webhook."""
        response = self.server.api("POST", f"/api/ml/{ml_id}/train", json={}, expect=200)
        return response.json() if response.content else None
