"""Attacks from a real headless Chromium: a page on another origin POSTs forms and no-cors fetches to every
state-changing endpoint (nothing changes: the store is read afterwards), frames /review (the frame is refused),
a page on a name rebound to 127.0.0.1 can neither read nor write, and annotator- or model-written markup renders
inert on the review page.

Prompter is served on http://127.0.0.1:<port>; the attacker's pages on http://localhost:<other port>, another
site to the browser. A recorder in front of the app keeps what reached the server, so the test also shows the
browser did send the forged requests (and what they carried) rather than passing because nothing was sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlmodel import Session
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.app import create_app
from service.settings import settings
from service.store import db, repo
from service.store.models import Proposal
from tests.agent.conftest import CONFIG
from tests.api.conftest import _captured
from tests.api.test_review import evidence
from tests.browser.conftest import PASSWORD, USER, serving
from tests.store_snapshot import snapshot

WAIT_S = 60
XSS = "<img src=x onerror=alert(1)>"
XSS_TITLE = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"


class Recorder:
    """ASGI wrapper that notes every HTTP request reaching the server and the status it was answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        entry = {
            "method": scope["method"],
            "path": scope["path"],
            "origin": headers.get("origin"),
            "site": headers.get("sec-fetch-site"),
            "type": headers.get("content-type"),
            "auth": "authorization" in headers,
            "status": None,
        }
        self.seen.append(entry)

        async def noted(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, noted)


@dataclass
class Target:
    url: str
    recorder: Recorder
    auth: tuple[str, str] | None
    proposal_id: int
    calls: list[tuple[str, Any]] = field(default_factory=list)


def seed(db_url: str) -> int:
    """Project 1 with its default prompt (v1, active), a user prompt (v2) and a pending proposal: its id."""
    with Session(db.sql_engine(db_url)) as session:
        repo.upsert_project(session, "1", CONFIG)
        default = repo.record_prompt(session, "1", "Classify the request by intent.", "default")
        repo.record_prompt(session, "1", "Pick the intent.", "user", parent_id=default.id)
        proposal = Proposal(
            project_id="1", base_version_id=default.id, strategy="definitions", text="Choose.", metrics=evidence()
        )
        session.add(proposal)
        session.commit()
        return proposal.id


@pytest.fixture(params=["loopback, no credentials", "basic auth held by the browser"])
def target(
    request: pytest.FixtureRequest, db_url: str, tiny_engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target]:
    monkeypatch.setattr(settings, "host", "127.0.0.1")
    auth = (USER, PASSWORD) if request.param.startswith("basic") else None
    if auth:
        monkeypatch.setattr(settings, "basic_auth_user", USER)
        monkeypatch.setattr(settings, "basic_auth_pass", PASSWORD)
    recorder = Recorder(create_app(engine=tiny_engine))
    with serving(recorder) as url:
        proposal_id = seed(db_url)
        captured = _captured()
        calls = [
            ("/setup", {**captured["setup"]["body"], "project": "2.1700000000"}),
            ("/predict", captured["predict_batch"]["body"]),
            ("/webhook", captured["webhook_annotation_created"]["body"]),
            ("/projects/1/prompts/2/activate", None),
            ("/projects/1/prompts/2/accept", {"decided_by": "mallory"}),
            (f"/proposals/{proposal_id}/accept", {"decided_by": "mallory"}),
            (f"/proposals/{proposal_id}/reject", {"reason": "forged"}),
            ("/projects/1/refine", None),
        ]
        yield Target(url, recorder, auth, proposal_id, calls)


@contextmanager
def attacker(pages: dict[str, str]) -> Iterator[str]:
    """The attacker's site: ``pages`` served on http://localhost:<port>."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = pages.get(self.path.split("?")[0], "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


ATTACK = """<!doctype html>
<html><head><title>cute cats</title></head><body>
<script>
const target = %(target)s;
const calls = %(calls)s;
let pending = 0;
const done = () => { if (--pending === 0) document.title = "done"; };
calls.forEach(([path, body], i) => {
  const text = JSON.stringify(body || {});
  for (const enctype of ["text/plain", "application/x-www-form-urlencoded"]) {
    // a form whose text/plain encoding is the JSON body: name + "=" + value
    const frame = document.createElement("iframe");
    frame.name = `f${i}-${enctype}`;
    document.body.append(frame);
    const form = document.createElement("form");
    Object.assign(form, { method: "POST", action: target + path, enctype, target: frame.name });
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = text === "{}" ? '{"x": "' : text.slice(0, -1) + ', "x": "';
    input.value = '"}';
    form.append(input);
    document.body.append(form);
    pending++;
    frame.addEventListener("load", done, { once: true });
    form.submit();
  }
  const init = { method: "POST", mode: "no-cors", credentials: "include" };
  pending += 2;
  fetch(target + path, { ...init, headers: { "Content-Type": "text/plain" }, body: text }).finally(done);
  fetch(target + path, init).finally(done);
});
</script></body></html>
"""

FRAME = """<!doctype html>
<html><head><title>win a prize</title></head><body>
<p>Click the button!</p>
<iframe id="victim" src="%(target)s/review/1" width="1000" height="600"></iframe>
</body></html>
"""


def test_a_cross_site_page_changes_nothing(target: Target, browser: WebDriver, db_url: str) -> None:
    if target.auth:  # the reviewer opened the review page first: Chromium holds the basic-auth credentials
        host = target.url.removeprefix("http://")
        browser.get(f"http://{target.auth[0]}:{target.auth[1].replace(' ', '%20')}@{host}/review/1")
        WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script("return document.body.dataset.ready"))
    before = snapshot(db_url)
    seen_before = len(target.recorder.seen)
    page = ATTACK % {"target": json.dumps(target.url), "calls": json.dumps(target.calls)}
    with attacker({"/attack.html": page}) as evil:
        browser.get(f"{evil}/attack.html")
        WebDriverWait(browser, WAIT_S).until(lambda d: d.title == "done")
    time.sleep(0.5)  # the last answers are sent before the handler would have committed anything
    assert snapshot(db_url) == before

    forged = target.recorder.seen[seen_before:]
    for path, _ in target.calls:
        arrived = [r for r in forged if r["path"] == path]
        assert len(arrived) == 4, (path, arrived)  # two forms, two fetches: the browser did send them
        assert all(r["method"] == "POST" and r["origin"] == evil for r in arrived), arrived
        assert {r["status"] for r in arrived} == {403}, arrived
        assert {r["site"] for r in arrived} == {"cross-site"}
    kinds = sorted({str(r["type"]) for r in forged})
    print(
        f"\n{len(forged)} forged requests, all 403; content types {kinds}; with credentials: "
        f"{sum(r['auth'] for r in forged)}"
    )


def test_review_page_refuses_to_be_framed(db_url: str, tiny_engine, browser: WebDriver, monkeypatch) -> None:
    monkeypatch.setattr(settings, "host", "127.0.0.1")
    recorder = Recorder(create_app(engine=tiny_engine))
    with serving(recorder) as url, attacker({"/frame.html": FRAME % {"target": url}}) as evil:
        seed(db_url)
        browser.get(f"{evil}/frame.html")
        WebDriverWait(browser, WAIT_S).until(
            lambda d: any(r["path"] == "/review/1" and r["status"] for r in recorder.seen)
        )
        time.sleep(1.0)
        browser.switch_to.frame(browser.find_element(By.ID, "victim"))
        inside = browser.execute_script(
            "return [location.href, document.querySelectorAll('#projects, #history, button').length]"
        )
        browser.switch_to.default_content()
    assert inside[1] == 0, inside  # nothing of the review page is in the frame
    assert not inside[0].startswith(url), inside  # the frame shows the browser's error page, not /review
    assert [r["status"] for r in recorder.seen if r["path"] == "/review/1"] == [200]  # served, and refused
    assert not any(r["path"].startswith("/static/") for r in recorder.seen)  # its scripts never ran
    console = " ".join(e["message"] for e in browser.get_log("browser"))
    print(f"\nframe: {inside[0]}; console: {console[:300]}")
    assert "frame-ancestors 'none'" in console and "blocked" in console


def test_markup_in_prompts_and_decisions_renders_inert(
    db_url: str, tiny_engine, browser: WebDriver, monkeypatch
) -> None:
    monkeypatch.setattr(settings, "host", "127.0.0.1")
    with Session(db.sql_engine(db_url)) as session:
        repo.upsert_project(session, "1", CONFIG)
        default = repo.record_prompt(session, "1", "Classify the request by intent.", "default")
        text = f"Pick the intent. {XSS} {XSS_TITLE}\n{{text}}"
        user = repo.record_prompt(session, "1", text, "annotator", author=XSS, parent_id=default.id, activate=True)
        pending = Proposal(
            project_id="1", base_version_id=user.id, strategy="definitions", text=f"{XSS}\n{{text}}", metrics=evidence()
        )
        rejected = Proposal(
            project_id="1",
            base_version_id=user.id,
            strategy="rewrite",
            text="x",
            status="rejected",
            reason=XSS,
            decided_by=XSS_TITLE,
            metrics=evidence(),
        )
        session.add(pending)
        session.add(rejected)
        session.commit()
        user_id, rejected_id = user.id, rejected.id
    with serving(create_app(engine=tiny_engine)) as url:
        browser.get(f"{url}/review/1")
        wait = WebDriverWait(browser, WAIT_S)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready"))
        browser.find_element(By.CSS_SELECTOR, f'#history tr[data-id="{user_id}"] button.view').click()
        shown = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#version-view pre.prompt"))[0]
        time.sleep(0.5)  # an onerror would have fired by now
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert  # noqa: B018 (the property raises when no alert is open)
        assert browser.title != "pwned"
        assert browser.execute_script("return document.querySelectorAll('img').length") == 0
        assert browser.execute_script("return document.scripts.length") == 2  # review.js and evaluation.js
        assert XSS in shown.text and XSS_TITLE in shown.text
        author = browser.find_element(By.CSS_SELECTOR, f'#history tr[data-id="{user_id}"] td:nth-child(3)').text
        assert author == XSS
        diff = " ".join(s.text for s in browser.find_elements(By.CSS_SELECTOR, "#pending pre.diff span"))
        assert XSS in diff
        row = browser.find_element(By.CSS_SELECTOR, f'#decided tr[data-id="{rejected_id}"]')
        assert row.find_element(By.CSS_SELECTOR, ".reason").text == XSS
        assert row.find_element(By.CSS_SELECTOR, "td:nth-child(5)").text == XSS_TITLE
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors


REBOUND = "rebind.test"  # Chromium resolves it to 127.0.0.1, as after a DNS rebinding


@pytest.mark.parametrize("browser", [[f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"]], indirect=True)
def test_a_page_on_a_rebound_name_can_neither_read_nor_write(
    db_url: str, tiny_engine, browser: WebDriver, monkeypatch
) -> None:
    """The attacker's page, once its name points at 127.0.0.1, is same-origin with Prompter: every request it
    makes, the page itself included, is answered 403 because of its Host."""
    monkeypatch.setattr(settings, "host", "127.0.0.1")
    recorder = Recorder(create_app(engine=tiny_engine))
    with serving(recorder) as url:
        seed(db_url)
        before = snapshot(db_url)
        rebound = url.replace("127.0.0.1", REBOUND)
        browser.get(f"{rebound}/review/1")
        assert "listens on loopback" in browser.find_element(By.TAG_NAME, "body").text  # not even the page
        answers = browser.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const post = { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" };
            Promise.all([
              fetch("/projects/1/prompts", { credentials: "include" }).then((r) => r.status),
              fetch("/projects/1/prompts/2/activate", post).then((r) => r.status),
            ]).then(done, (e) => done(String(e)));
            """
        )
        assert answers == [403, 403]
        assert snapshot(db_url) == before
        seen = [(r["method"], r["path"], r["origin"], r["status"]) for r in recorder.seen]
        # the page's own origin: same-origin to the browser (no Sec-Fetch-Site on plain http to a name)
        assert ("POST", "/projects/1/prompts/2/activate", rebound, 403) in seen
        assert ("GET", "/projects/1/prompts", None, 403) in seen
        assert {r["status"] for r in recorder.seen} == {403}
