"""A teacher that is down or slow makes the rewrite proposal fail with a reason; the rest goes on."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlmodel import Session, select

from agent.loop import refine
from agent.strategies.teacher import TeacherError, ask, endpoint
from service.settings import AgentSettings
from service.store.models import Proposal, RefinementRun


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Teacher(BaseHTTPRequestHandler):
    delay = 0.0
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Teacher.seen.append({"path": self.path, **body})
        time.sleep(self.delay)
        if self.path.endswith("/chat/completions"):
            choice = {"message": {"role": "assistant", "content": "Decide the intent: loan, card or credit card."}}
        else:
            choice = {"text": " Decide the intent carefully."}
        payload = json.dumps({"choices": [choice], "usage": {"total_tokens": 42}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def teacher():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Teacher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Teacher.delay, Teacher.seen = 0.0, []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_endpoints() -> None:
    assert endpoint("http://h:8000", "chat") == "http://h:8000/v1/chat/completions"
    assert endpoint("http://h:8000/v1/", "completions") == "http://h:8000/v1/completions"


def test_teacher_answers_on_both_apis(teacher: str) -> None:
    reply = ask(teacher, "improve this", model="m", api="chat", max_tokens=20)
    assert reply.text.startswith("Decide the intent") and reply.tokens == 42
    assert Teacher.seen[-1]["messages"][0]["content"] == "improve this" and Teacher.seen[-1]["model"] == "m"
    assert ask(teacher, "p", api="completions").text == "Decide the intent carefully."
    assert Teacher.seen[-1]["path"] == "/v1/completions" and Teacher.seen[-1]["prompt"] == "p"


def test_down_and_slow_teachers_raise_with_a_reason(teacher: str) -> None:
    with pytest.raises(TeacherError, match="unreachable"):
        ask(f"http://127.0.0.1:{free_port()}", "p", timeout_s=2)
    Teacher.delay = 1.0
    with pytest.raises(TeacherError, match="did not answer within 0.2 s"):
        ask(teacher, "p", timeout_s=0.2)


def test_down_teacher_is_a_failed_strategy_and_the_run_completes(session: Session, stub_engine, seed) -> None:
    seed(stub_engine, 12)
    url = f"http://127.0.0.1:{free_port()}"
    cfg = AgentSettings(strategies=["rewrite", "retrieval"], teacher_url=url, teacher_timeout_s=2, demos_k=2)
    outcome = refine(session, stub_engine, "1", "api", cfg)
    [failed] = outcome.failed
    assert failed["strategy"] == "rewrite"
    assert "unreachable" in failed["reason"] and url in failed["reason"]
    assert session.exec(select(Proposal).where(Proposal.strategy == "rewrite")).all() == []  # not a proposal
    run = session.get(RefinementRun, outcome.run_id)
    assert run.status == "done"
    verdicts = {c["strategy"]: c["verdict"] for c in run.summary["candidates"]}
    assert verdicts["rewrite"] == "failed" and verdicts["retrieval"] != "failed"


def test_teacher_rewrite_is_scored(session: Session, stub_engine, seed, teacher: str) -> None:
    seed(stub_engine, 12)
    cfg = AgentSettings(strategies=["rewrite"], teacher_url=teacher, alpha=0.99)
    outcome = refine(session, stub_engine, "1", "api", cfg)
    [candidate] = outcome.candidates
    assert candidate["strategy"] == "rewrite" and candidate["verdict"] in {"significant", "not significant"}
    assert "got these wrong" in Teacher.seen[-1]["messages"][0]["content"]
