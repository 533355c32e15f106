"""Issue 11's live-evaluation figure: the time from a typed prompt to its stored evaluation on N annotated tasks,
against N tasks labeled at the bench's batch rate (one bulk call through the decision path), on the embedded model.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python scripts/measure_live_eval.py [--tasks 200] [--db DIR]

In process, on a fresh SQLite store: N DSTC11 insurance customer turns (22 intents, a seeded sample) are annotated;
the tasks are labeled once (as the webhooks' corrections do: label tries, prefix and embedding caches warm), then
timed in one bulk call ("batch") and through the model queue. An annotator's prompt then goes the way /predict takes
it (``service.projects.resolve_prompt``: recorded, announced) and the live evaluator scores it through the model
queue as background work: "cold" with the active version not yet measured on these tasks (both are scored), "warm"
with the active version measured already, as the webhooks' re-evaluation leaves it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from sqlmodel import Session

from agent import live_eval
from agent.hooks import queued_predictor
from constraints.engines import load_engine
from service import embeddings
from service.labeling import parse_config
from service.predictor import Prompt, label_tasks, prepare
from service.projects import ensure_prompt, resolve_prompt
from service.runtime import host
from service.settings import settings
from service.store import db, repo
from service.store.models import AnnotationCreate, Evaluation
from service.store.tasks import remember_tasks
from tests.load import workload

PROJECT = "1"


def typed(text: str) -> dict:
    """The interactive ``params.context`` Label Studio sends with Shift+Enter."""
    return {"result": [{"from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": [text]}}]}


def annotate(session: Session, rows: list[dict]) -> None:
    repo.upsert_project(session, PROJECT, workload.label_config())
    remember_tasks(session, PROJECT, [{"id": i, "data": {"text": r["text"]}} for i, r in enumerate(rows, start=1)])
    for i, row in enumerate(rows, start=1):
        choice = {"intent": [row["label"]]}
        repo.upsert_annotation(session, AnnotationCreate(id=i, project_id=PROJECT, task_id=i, choices=choice))


def time_typed(evaluator: live_eval.LiveEvaluator, session: Session, schema, text: str) -> tuple[float, dict]:
    started = time.perf_counter()
    version = resolve_prompt(session, PROJECT, schema, typed(text))  # what /predict does with a typed prompt
    assert evaluator.join(3600)
    seconds = time.perf_counter() - started
    stored: Evaluation | None = repo.latest_evaluation(session, version.id)
    assert stored is not None and stored.compared_with_id is not None, "no evaluation was stored"
    figures = {"accuracy": stored.accuracy, "active_accuracy": stored.compared_accuracy, "scoring_s": stored.seconds}
    return seconds, {**figures, "tasks": stored.tasks, "fixes": len(stored.fixes), "breaks": len(stored.breaks)}


def main(n: int, folder: Path) -> dict:
    url = f"sqlite:///{folder / 'live-eval.sqlite3'}"
    settings.database_url = url
    settings.eval_tasks = n
    db.migrate(url)
    engine = load_engine(settings)
    embeddings.embed(["warm up"])
    host.set_engine(engine)
    rows = random.Random(0).sample(workload.utterances(), n)
    schema = parse_config(workload.label_config(), settings.prompt_prefix, settings.response_name)
    evaluator = live_eval.LiveEvaluator(lambda: engine, lambda: Session(db.sql_engine(url)), queued_predictor)
    live_eval.install(evaluator)
    with Session(db.sql_engine(url)) as session:
        annotate(session, rows)
        active = ensure_prompt(session, PROJECT, schema)
        tasks = [{"id": i, "data": {"text": r["text"]}} for i, r in enumerate(rows, start=1)]
        # warm-up, as the webhooks' corrections leave it: label tries, the prefix cache, the texts' embeddings
        label_tasks(engine, schema, tasks, Prompt.of(active), max_chars=settings.max_text_chars)

        started = time.perf_counter()  # the bench's batch rate: N tasks in one bulk call of the decision path
        label_tasks(engine, schema, tasks, Prompt.of(active), max_chars=settings.max_text_chars)
        batch_s = time.perf_counter() - started
        started = time.perf_counter()  # the same through the model queue, as a Retrieve Predictions
        queued_predictor(engine)(schema, tasks, Prompt.of(active), prepare(engine, schema, tasks, Prompt.of(active)))
        queued_s = time.perf_counter() - started

        cold_s, cold = time_typed(evaluator, session, schema, "Which insurance request is this? Pick one intent.")
        evaluator.request(active.id, "annotations")  # the webhooks' re-evaluation: the active one measured already
        assert evaluator.join(3600)
        warm_s, warm = time_typed(evaluator, session, schema, "What does the customer want? Pick one intent.")
    return {
        "tasks": n,
        "model": engine.model_id,
        "batch_s": round(batch_s, 2),
        "batch_tasks_per_s": round(n / batch_s, 2),
        "batch_through_queue_s": round(queued_s, 2),
        "typed_to_stored_warm_s": round(warm_s, 2),
        "typed_to_stored_cold_s": round(cold_s, 2),
        "warm_over_batch": round(warm_s / batch_s, 2),
        "cold_over_batch": round(cold_s / batch_s, 2),
        "warm": warm,
        "cold": cold,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--db", type=Path, default=None, help="folder for the store (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prompter-live-eval-") as tmp:
        print(json.dumps(main(args.tasks, args.db or Path(tmp))))
