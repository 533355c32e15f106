"""Issue 13's start figures: `prompter serve` on the embedded model, time to its first /health answer and to ready, CPU
seconds used by then, and the answer to 30 tasks of 15,000 characters in one /predict (DSTC11 customer turns joined).

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python scripts/measure_start.py WORKDIR [PROMPTER_HOME]

A PROMPTER_HOME without the converted model measures a first start (conversion included); prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import httpx

from service.demo.processes import PrompterServer
from tests.load import workload
from tests.load.measure import cpu_seconds, process_tree


def long_text(start: int, chars: int = 15_000) -> str:
    rows, out, i = workload.utterances(), [], start
    while sum(len(x) + 1 for x in out) < chars:
        out.append(rows[i % len(rows)]["text"])
        i += 1
    return "\n".join(out)[:chars]


def main(workdir: Path, home: str | None) -> dict:
    env = {"PROMPTER_MODEL": "embedded", **({"PROMPTER_HOME": home} if home else {})}
    server = PrompterServer(workdir, ready_timeout=900, extra_env=env)
    load_before = os.getloadavg()
    launched = time.monotonic()
    server.launch()
    while server.health() is None:
        time.sleep(0.05)
    first = time.monotonic() - launched
    server.wait_ready()
    ready = time.monotonic() - launched
    assert server.process is not None
    cpu = cpu_seconds(process_tree(server.process.pid))
    body = workload.batch_body(range(1))
    body["tasks"] = [{"id": 1000 + k, "data": {"text": long_text(k * 97)}} for k in range(30)]
    try:
        with httpx.Client(base_url=server.url, timeout=900) as client:
            assert client.post("/setup", json=workload.setup_body()).status_code == 200
            started = time.monotonic()
            answer = client.post("/predict", json=body)
            seconds = time.monotonic() - started
    finally:
        server.stop()
    return {
        "load_before": [round(x, 2) for x in load_before],
        "first_answer_s": round(first, 2),
        "ready_s": round(ready, 2),
        "cpu_s_at_ready": round(cpu, 1),  # front + backend (a conversion child has exited by then)
        "long30_status": answer.status_code,
        "long30_s": round(seconds, 3),
        "long30_detail": answer.json().get("detail"),
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)))
