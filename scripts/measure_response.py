"""Issue 11's response figures: a Shift+Enter /predict's latency with the explained response (no generation) and
with the model's free text (generate, both), on the embedded model and the demo's 20 finance chats; and what the
free text says: how much of it repeats the customer's words, and how often it names the chosen intent.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python scripts/measure_response.py [ROUNDS]

Modes alternate task by task (one in-process app, agent off, a fresh SQLite database), after one warm-up request
per mode. Prints the figures as one JSON object and a sample of each mode's responses.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from constraints.engines import load_engine
from service.api.app import create_app
from service.fusion import label_words
from service.settings import settings
from service.store import db
from tests.conftest import LOOPBACK

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "service" / "sample_data"
SETUP = ROOT / "tests" / "e2e" / "fixtures" / "ls_requests.json"  # Label Studio 1.23's /setup body
PROMPT = "Classify the customer's intent."
MODES = ("explain", "generate", "both")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _body(config: str, task_id: int, data: dict) -> dict:
    context = {"result": [{"from_name": "prompt", "to_name": "chat", "type": "textarea", "value": {"text": [PROMPT]}}]}
    return {
        "project": "1.1700000000",
        "label_config": config,
        "tasks": [{"id": task_id, "data": data}],
        "params": {"context": context},
    }


def _response(result: dict) -> str:
    return next((r["value"]["text"][0] for r in result["result"] if r["from_name"] == "response"), "")


def main(rounds: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="measure-response-"))
    settings.database_url = f"sqlite:///{folder / 'prompter.sqlite3'}"
    settings.agent.enabled = False
    settings.warm_projects = 0
    db.migrate(settings.database_url)
    config = (SAMPLE / "finance_chats.xml").read_text()
    chats = json.loads((SAMPLE / "finance_chats.json").read_text())
    engine = load_engine(settings)
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    texts: dict[str, list[tuple[str, str, list[str]]]] = {m: [] for m in MODES}
    with TestClient(create_app(engine=engine), base_url=LOOPBACK) as client:
        setup = json.loads(SETUP.read_text())["setup"]["body"] | {"project": "1.1700000000", "schema": config}
        assert client.post("/setup", json=setup).status_code == 200
        for mode in MODES:  # the free-text generator's first build, the prompt's caches
            settings.response_mode = mode
            client.post("/predict", json=_body(config, 9999, chats[0]["data"]))
        for r in range(rounds):
            for i, chat in enumerate(chats):
                for k in range(len(MODES)):
                    mode = MODES[(i + k + r) % len(MODES)]
                    settings.response_mode = mode
                    started = time.perf_counter()
                    answer = client.post("/predict", json=_body(config, i + 1, chat["data"]))
                    seconds[mode].append(time.perf_counter() - started)
                    result = answer.json()["results"][0]
                    chosen = next(x["value"]["choices"] for x in result["result"] if x["from_name"] == "intent")
                    customer = " ".join(t["text"] for t in chat["data"]["dialogue"] if t["author"] == "customer")
                    texts[mode].append((customer, _response(result), chosen))

    def echo(customer: str, text: str) -> float:
        words, said = _words(text), set(_words(customer))
        return sum(w in said for w in words) / len(words) if words else 0.0

    def names_intent(text: str, chosen: list[str]) -> bool:
        return any(label_words(x) in " ".join(_words(text)) or x.lower() in text.lower() for x in chosen)

    generated = texts["generate"]
    figures = {
        "model": engine.model_id,
        "tasks": len(chats) * rounds,
        "response_max_tokens": settings.response_max_tokens,
        **{f"{m}_p50_s": round(statistics.median(seconds[m]), 3) for m in MODES},
        **{f"{m}_p95_s": round(statistics.quantiles(seconds[m], n=20)[-1], 3) for m in MODES},
        "free_text_words_from_customer": round(statistics.mean(echo(c, t) for c, t, _ in generated), 2),
        "free_text_names_chosen_intent": round(statistics.mean(names_intent(t, ch) for _, t, ch in generated), 2),
    }
    print(json.dumps(figures, indent=2))
    for mode in MODES:
        print(f"\n--- {mode}: first 3 responses ---")
        for customer, text, chosen in texts[mode][:3]:
            print(f"customer: {customer!r}\nchosen: {chosen}\nresponse: {text!r}\n")
    return figures


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
