"""Security over HTTP: cross-site browser requests change nothing, state-changing bodies are JSON, Label Studio's
real calls pass, review actions need a reviewer beyond loopback and record who decided, bodies over the limit get
a 413 before they are read (RSS measured on a server in a subprocess), and Label Studio's token never leaves."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session

from service.api import reviewers
from service.api.app import create_app
from service.api.reviewers import ReviewAccess, hash_password, review_access
from service.api.routes.review import STATIC_DIR
from service.settings import settings
from service.store import db, repo
from tests.api.conftest import _captured
from tests.api.test_auth_routes import _routes
from tests.api.test_review import propose
from tests.store_snapshot import snapshot

EVIL = "http://evil.example"
SAME = "http://localhost"  # the client fixture's Host


def state_changing(ls: dict, proposal_id: int) -> list[tuple[str, Any]]:
    """Every state-changing endpoint with a body that would change the store if it reached the handler."""
    other_project = {**ls["setup"], "project": "2.1700000000"}
    return [
        ("/setup", other_project),
        ("/predict", ls["predict_batch"]),
        ("/webhook", ls["webhook_annotation_created"]),
        ("/projects/1/prompts/2/activate", None),
        ("/projects/1/prompts/2/accept", {"decided_by": "mallory"}),
        (f"/proposals/{proposal_id}/accept", {"decided_by": "mallory"}),
        (f"/proposals/{proposal_id}/reject", {"reason": "forged"}),
        ("/projects/1/refine", None),
    ]


@pytest.fixture
def seeded(client: TestClient, ls: dict, db_url: str) -> int:
    """Project 1 set up by Label Studio, a second (inactive) prompt version, a pending proposal: its id."""
    assert client.post("/setup", json=ls["setup"]).status_code == 200
    with Session(db.sql_engine(db_url)) as session:
        repo.record_prompt(session, "1", "Pick the intent.\n{dialogue}", "user", parent_id=1)
    return propose(db_url, "1", "Choose the intent.\n{dialogue}")


def test_every_state_changing_route_is_covered(client: TestClient, ls: dict) -> None:
    """A POST/PUT/PATCH/DELETE route added later must be added to ``state_changing`` (and so be tested)."""
    app_routes = {re.sub(r"/1(/|$)", r"/{id}\1", path) for m, path in _routes(client.app) if m != "GET"}
    tested = {re.sub(r"/\d+(/|$)", r"/{id}\1", path) for path, _ in state_changing(ls, 1)}
    assert app_routes == tested


# -- cross-site requests ------------------------------------------------------------------------------

FORGERIES = {
    "form text/plain": {"Origin": EVIL, "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"},
    "form urlencoded": {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"},
    "form multipart": {"Origin": EVIL, "Content-Type": "multipart/form-data; boundary=x"},
    "no-cors fetch, no body": {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
    "json from elsewhere": {"Origin": EVIL, "Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
    "sandboxed page": {"Origin": "null", "Content-Type": "text/plain"},
    "same site, other port": {
        "Origin": "http://localhost:8080",
        "Content-Type": "text/plain",
        "Sec-Fetch-Site": "same-site",
    },
    "old browser, no Sec-Fetch-Site": {"Origin": "http://localhost.evil.example", "Content-Type": "text/plain"},
}


@pytest.mark.parametrize("kind", FORGERIES)
def test_cross_site_requests_are_refused_and_change_nothing(
    client: TestClient, ls: dict, seeded: int, db_url: str, kind: str
) -> None:
    headers = FORGERIES[kind]
    before = snapshot(db_url)
    for path, body in state_changing(ls, seeded):
        if "Content-Type" not in headers:
            content = None
        elif "urlencoded" in headers["Content-Type"]:
            content = b"reason=forged&decided_by=mallory"
        else:
            content = json.dumps(body if body is not None else {}).encode()
        response = client.post(path, content=content, headers=headers)
        assert response.status_code == 403, (kind, path, response.text)
        assert response.json()["detail"].startswith("cross-site request refused"), response.json()
    assert snapshot(db_url) == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_same_origin_bodies_must_be_json(
    client: TestClient, ls: dict, seeded: int, db_url: str, content_type: str
) -> None:
    before = snapshot(db_url)
    for path, body in state_changing(ls, seeded):
        response = client.post(
            path, content=json.dumps(body or {}), headers={"Origin": SAME, "Content-Type": content_type}
        )
        assert response.status_code == 415, (path, response.text)
        assert "send application/json" in response.json()["detail"]
    body_without_type = client.post(f"/proposals/{seeded}/accept", content=b"{}", headers={"Content-Type": ""})
    assert body_without_type.status_code == 415
    assert snapshot(db_url) == before


def test_label_studio_calls_without_origin_pass(client: TestClient, db_url: str) -> None:
    """Label Studio's captured requests, with the headers it sent (no Origin, application/json)."""
    captured = _captured()
    for name in (
        "setup",
        "predict_batch",
        "predict_interactive",
        "webhook_annotation_created",
        "webhook_start_training",
    ):
        call = captured[name]
        headers = {k: v for k, v in call["headers"].items() if k.lower() not in {"connection", "accept-encoding"}}
        assert "Origin" not in headers and headers["Content-Type"] == "application/json"
        response = client.request(call["method"], call["path"], content=json.dumps(call["body"]), headers=headers)
        assert response.status_code == 200, (name, response.text)
    assert len(snapshot(db_url)["annotation"]) == 1


def test_the_review_page_own_requests_pass(client: TestClient, seeded: int) -> None:
    """What review.js sends: same origin, JSON when there is a body, none for rollback and refine."""
    page = {"Origin": SAME, "Sec-Fetch-Site": "same-origin"}
    assert client.post("/projects/1/prompts/2/activate", headers=page).status_code == 200
    assert client.post("/projects/1/refine", headers=page).status_code == 409  # nothing to learn from: handler ran
    accepted = client.post(f"/proposals/{seeded}/accept", json={}, headers=page)
    assert accepted.status_code == 200, accepted.text
    # an origin-only check for browsers without Sec-Fetch-Site
    assert client.post("/projects/1/prompts/1/activate", headers={"Origin": SAME}).status_code == 200


def test_allowed_origins_open_up(client: TestClient, seeded: int, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = {"Origin": "https://LS.example:443", "Sec-Fetch-Site": "cross-site"}
    assert client.post("/projects/1/prompts/2/activate", headers=headers).status_code == 403
    monkeypatch.setattr(settings, "allowed_origins", "https://ls.example, not an origin")
    assert client.post("/projects/1/prompts/2/activate", headers=headers).status_code == 200
    refused = client.post("/projects/1/prompts/1/activate", headers={**headers, "Origin": "https://ls.example:8443"})
    assert refused.status_code == 403


def test_dns_rebinding_is_refused_on_loopback(
    client: TestClient, seeded: int, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page on a name re-pointed at 127.0.0.1 is same-origin to the browser: only its Host gives it away."""
    rebound = "http://rebind.example:9090"
    browser = {"Host": "rebind.example:9090", "Origin": rebound, "Sec-Fetch-Site": "same-origin"}
    before = snapshot(db_url)
    for method, path, headers in [
        ("POST", "/projects/1/prompts/2/activate", browser),
        ("GET", "/projects/1/prompts", {"Host": "rebind.example:9090"}),  # a same-origin GET: no Origin
        ("GET", "/review", {"Host": "rebind.example"}),
    ]:
        response = client.request(method, path, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert "listens on loopback (127.0.0.1)" in response.json()["detail"]
    assert snapshot(db_url) == before
    for loopback in ("127.0.0.1:9090", "[::1]:9090", "localhost", "127.0.0.5"):
        assert client.get("/projects/1/prompts", headers={"Host": loopback}).status_code == 200, loopback
    monkeypatch.setattr(settings, "allowed_origins", rebound)  # e.g. a reverse proxy that keeps the Host
    assert client.post("/projects/1/prompts/2/activate", headers=browser).status_code == 200
    monkeypatch.setattr(settings, "allowed_origins", "")
    monkeypatch.setattr(settings, "host", "0.0.0.0")  # beyond loopback any Host is normal (reviewers guard writes)
    assert client.get("/projects/1/prompts", headers=browser).status_code == 200


def test_reads_are_not_guarded(client: TestClient, seeded: int) -> None:
    assert (
        client.get("/projects/1/prompts", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}).status_code == 200
    )


# -- reviewer credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", ReviewAccess.LOOPBACK_OPEN),
        ("127.0.0.2", ReviewAccess.LOOPBACK_OPEN),
        ("::1", ReviewAccess.LOOPBACK_OPEN),
        ("localhost", ReviewAccess.LOOPBACK_OPEN),
        ("0.0.0.0", ReviewAccess.REFUSED),
        ("::", ReviewAccess.REFUSED),
        ("192.168.1.5", ReviewAccess.REFUSED),
        ("prompter", ReviewAccess.REFUSED),
    ],
)
def test_review_access_follows_the_bind_host(monkeypatch: pytest.MonkeyPatch, host: str, expected: str) -> None:
    monkeypatch.setattr(settings, "host", host)
    assert review_access() == expected
    monkeypatch.setattr(settings, "reviewers", SecretStr("alice:pw"))
    assert review_access() == ReviewAccess.CREDENTIALS


def test_beyond_loopback_without_credentials_review_actions_are_refused(
    client: TestClient, ls: dict, seeded: int, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "host", "0.0.0.0")
    before = snapshot(db_url)
    for path, body in state_changing(ls, seeded)[3:]:
        response = client.post(path, json=body)
        assert response.status_code == 403, path
        detail = response.json()["detail"]
        assert "PROMPTER_REVIEWERS" in detail and "BASIC_AUTH_USER" in detail and "0.0.0.0" in detail
    assert snapshot(db_url) == before
    # Label Studio's own calls are not review actions
    for path, body in state_changing(ls, seeded)[:3]:
        assert client.post(path, json=body).status_code == 200, path
    assert client.get("/review").status_code == 200


def test_reviewer_accounts_are_required_and_named(
    client: TestClient, db_url: str, seeded: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "host", "0.0.0.0")
    bob_hash = hash_password("bob's pw: with a colon", iterations=1_000)
    monkeypatch.setattr(settings, "reviewers", SecretStr(f"alice:alice-pw, bob:{bob_hash}"))
    second = propose(db_url, "1", "Name the intent.\n{dialogue}")
    before = snapshot(db_url)
    for auth in (None, ("alice", "wrong"), ("mallory", "alice-pw"), ("bob", bob_hash)):
        for path, body in [
            (f"/proposals/{seeded}/accept", {}),
            (f"/proposals/{seeded}/reject", {"reason": "x"}),
            ("/projects/1/prompts/2/activate", None),
            ("/projects/1/prompts/2/accept", {}),
            ("/projects/1/refine", None),
        ]:
            response = client.post(path, json=body, auth=auth)
            assert response.status_code == 401, (auth, path)
            assert response.headers["WWW-Authenticate"] == 'Basic realm="Prompter"'
            assert "PROMPTER_REVIEWERS" in response.json()["detail"]
    assert snapshot(db_url) == before
    assert client.get("/review").status_code == 200  # reading stays open: only BASIC_AUTH_* closes it

    rejected = client.post(f"/proposals/{second}/reject", json={"reason": "no"}, auth=("bob", "bob's pw: with a colon"))
    assert rejected.status_code == 200 and rejected.json()["decided_by"] == "bob"
    accepted = client.post(f"/proposals/{seeded}/accept", json={"decided_by": "mallory"}, auth=("alice", "alice-pw"))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["proposal"]["decided_by"] == "alice"  # the authenticated name, not the body's
    assert accepted.json()["version"]["author"] == "alice"
    activated = client.post("/projects/1/prompts/2/activate", auth=("alice", "alice-pw"))
    assert activated.status_code == 200
    assert client.post("/projects/1/refine", auth=("bob", "bob's pw: with a colon")).status_code == 409  # ran


def test_basic_auth_pair_and_reviewers_together(
    client: TestClient, ls: dict, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BASIC_AUTH_* closes every route; a reviewer's pair opens them too, and Label Studio's pair may decide."""
    monkeypatch.setattr(settings, "basic_auth_user", "ls")
    monkeypatch.setattr(settings, "basic_auth_pass", "ls-pw")
    monkeypatch.setattr(settings, "reviewers", SecretStr("alice:alice-pw"))
    monkeypatch.setattr(settings, "host", "0.0.0.0")
    assert client.post("/setup", json=ls["setup"], auth=("ls", "ls-pw")).status_code == 200
    first, second = propose(db_url, "1", "A.\n{dialogue}"), propose(db_url, "1", "B.\n{dialogue}")
    assert client.get("/projects/1/prompts").status_code == 401
    assert client.get("/projects/1/prompts", auth=("alice", "alice-pw")).status_code == 200
    alice = client.post(f"/proposals/{first}/reject", json={"reason": "no"}, auth=("alice", "alice-pw"))
    assert alice.json()["decided_by"] == "alice"
    ls_pair = client.post(f"/proposals/{second}/accept", auth=("ls", "ls-pw"))
    assert ls_pair.status_code == 200 and ls_pair.json()["proposal"]["decided_by"] == "ls"


def test_loopback_without_credentials_works_as_before(client: TestClient, seeded: int) -> None:
    accepted = client.post(f"/proposals/{seeded}/accept", json={"decided_by": "ana"})
    assert accepted.status_code == 200 and accepted.json()["proposal"]["decided_by"] == "ana"


@pytest.mark.parametrize(
    ("host", "reviewers_value", "expected"),
    [
        ("127.0.0.1", None, "review actions are open to anyone who reaches 127.0.0.1"),
        ("0.0.0.0", None, "review actions are refused: Prompter listens on 0.0.0.0"),
        ("0.0.0.0", "alice:pw,bob:pw", "review actions need reviewer credentials (2 account(s): alice, bob)"),
    ],
)
def test_the_startup_log_says_who_may_review(
    db_url: str,
    tiny_engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    host,
    reviewers_value,
    expected,
) -> None:
    monkeypatch.setattr(settings, "host", host)
    monkeypatch.setattr(settings, "reviewers", SecretStr(reviewers_value) if reviewers_value else None)
    with caplog.at_level(logging.INFO, logger="service.api.app"):
        create_app(engine=tiny_engine)
    assert expected in caplog.text
    assert "pw" not in caplog.text.replace("PROMPTER_REVIEWERS", "")


def test_hashed_passwords() -> None:
    stored = hash_password("s3cret", iterations=1_000, salt="salt")
    assert stored.startswith("pbkdf2_sha256$1000$salt$")
    assert reviewers.check_password(stored, "s3cret") and not reviewers.check_password(stored, "s3cret ")
    # Django's own hash of the same password, salt and iterations
    assert (
        stored
        == "pbkdf2_sha256$1000$salt$"
        + __import__("base64").b64encode(__import__("hashlib").pbkdf2_hmac("sha256", b"s3cret", b"salt", 1000)).decode()
    )
    assert reviewers.parse_reviewers("a:1, b:x:y ,:nobody, c:, d") == {"a": "1", "b": "x:y"}


# -- the review page --------------------------------------------------------------------------------


def test_review_page_headers(client: TestClient) -> None:
    for path in ("/review", "/review/1", "/static/review.js", "/static/evaluation.js", "/static/review.css"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["frame-ancestors"] == "'none'"
        assert directives["script-src"] == "'self'" and "unsafe" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        self.problems += [f"<{tag} {name}=...>" for name in names if name.startswith("on") or name == "style"]
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.problems.append("<script> without src")
        if any((value or "").strip().lower().startswith("javascript:") for _, value in attrs):
            self.problems.append(f"<{tag}> with a javascript: URL")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script")


def test_review_page_has_no_inline_script_and_no_markup_sinks() -> None:
    parser = _Markup()
    parser.feed((STATIC_DIR / "review.html").read_text())
    assert parser.problems == []
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|srcdoc")
    for script in sorted(STATIC_DIR.glob("*.js")):
        found = [
            f"{script.name}:{n}" for n, line in enumerate(script.read_text().splitlines(), 1) if sinks.search(line)
        ]
        assert found == []


# -- Label Studio's token ---------------------------------------------------------------------------


def test_access_token_never_leaves(
    client: TestClient, ls: dict, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "ls-secret-token-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    setup = client.post("/setup", json={**ls["setup"], "access_token": token})
    assert setup.status_code == 200
    invalid = client.post("/setup", json={"access_token": token, "project": {"bad": "shape"}})
    assert invalid.status_code == 422
    client.post("/predict", json=ls["predict_batch"])
    seen = [setup.text, invalid.text]
    for method, path in _routes(client.app):
        if method == "GET":
            seen.append(client.get(path).text)
    assert all(token not in text for text in seen)
    assert token not in caplog.text
    assert token not in json.dumps(snapshot(db_url), default=str)
    database = Path(db_url.removeprefix("sqlite:///"))
    for file in database.parent.glob(database.name + "*"):
        assert token.encode() not in file.read_bytes()


# -- body size --------------------------------------------------------------------------------------


def test_default_body_limit_fits_label_studio_s_largest_batch() -> None:
    assert settings.max_text_chars == 20_000 and settings.max_body_bytes is None
    assert settings.body_limit() == 4_000 * (20_000 + 4_096) == 96_384_000


def test_oversized_bodies_get_413_before_the_handler(
    client: TestClient, ls: dict, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = ls["webhook_annotation_created"]
    limit = len(json.dumps(event)) + 1_000
    monkeypatch.setattr(settings, "max_body_bytes", limit)
    event["task"]["data"]["padding"] = "x" * 5_000
    before = snapshot(db_url)
    declared = client.post("/webhook", json=event)
    assert declared.status_code == 413
    assert declared.json() == {"detail": f"the request body is larger than {limit} bytes (PROMPTER_MAX_BODY_BYTES)"}

    def chunks():  # no Content-Length: httpx sends it chunked
        data = json.dumps(event).encode()
        for i in range(0, len(data), 1_000):
            yield data[i : i + 1_000]

    streamed = client.post("/webhook", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and "PROMPTER_MAX_BODY_BYTES" in streamed.json()["detail"]
    assert snapshot(db_url) == before
    del event["task"]["data"]["padding"]
    assert client.post("/webhook", json=event).status_code == 200  # under the limit: as before


SERVER = """
import sys, uvicorn
from service.api.app import create_app
uvicorn.run(create_app(load_model=False), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
MIB = 1 << 20


def _rss_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))


def _send_body(port: int, total: int, chunked: bool) -> tuple[int, int]:
    """POST /webhook with ``total`` bytes, 1 MiB at a time, until the server answers; (status, bytes sent)."""
    head = "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {total}\r\n\r\n"
    chunk = b'{"action": "ANNOTATION_CREATED", "pad": "' + b"x" * (MIB - 40)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.encode())
        answer = b""
        try:
            while sent < total:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered already
                piece = chunk[: total - sent]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked and sent >= total:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(60)
        try:
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    return int(answer.split(b" ", 2)[1]), sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_300_mib_body_is_refused_with_bounded_memory(db_url: str, tmp_path: Path, chunked: bool) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PROMPTER_DATABASE_URL": db_url, "PROMPTER_HOST": "127.0.0.1", "PROMPTER_WARMUP": "false"}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.5)
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # peak RSS (VmHWM) := current RSS
        baseline = _rss_kib(server.pid, "VmRSS")
        status, sent = _send_body(port, 300 * MIB, chunked)
        growth_mib = (_rss_kib(server.pid, "VmHWM") - baseline) / 1024
        print(
            f"\n300 MiB body ({'chunked' if chunked else 'Content-Length'}): {status} after {sent / MIB:.0f} MiB sent; "
            f"peak RSS growth {growth_mib:.1f} MiB (limit {settings.body_limit() / MIB:.1f} MiB)"
        )
        assert status == 413
        limit_mib = settings.body_limit() / MIB
        assert growth_mib < (16 if not chunked else 2.5 * limit_mib)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
