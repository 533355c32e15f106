"""`prompter label`: label every task of a file or a Label Studio project with the local model, resumably.

Tasks run through the service's own decision path (``service.predictor.label_tasks``, the prompt version's
demonstrations included) in chunks; each chunk's
predictions are committed to the store before the next starts, keyed by (project, task id, model version).
A rerun skips what is stored, so an interrupted run (Ctrl-C, crash, kill) loses at most the chunk in flight
and never duplicates a prediction. Outputs are written at the end: predictions imported into the Label Studio
project and/or a JSON file of tasks with predictions that Label Studio imports (written atomically).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select
from tqdm import tqdm

from constraints.base import Engine, EngineUnavailable
from service.labeling import ProjectSchema
from service.offline.project import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    Source,
    StoreError,
    add_source_arguments,
    load_engine_for,
    open_source,
    open_store,
    project_prompt,
    run_command,
    say,
)
from service.offline.tasks_io import InputError, InputTask, read_text, remove_stale_partials, write_json_atomic
from service.predictor import Prompt, TaskDataError, TaskPrediction, check_tasks, label_tasks
from service.settings import settings
from service.store import repo
from service.store.models import Prediction
from service.versions import model_version

PROG = "prompter label"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """What every task of one run is labeled with: the prompt version with its demonstration pool, as
    ``/predict`` labels with it."""

    project_id: str
    schema: ProjectSchema
    prompt: Prompt
    model_version: str


@dataclass(frozen=True)
class Labeled:
    """One task's stored prediction, in Label Studio's shape plus the chosen labels per control."""

    task_id: int
    model_version: str
    score: float
    result: list[dict[str, Any]]
    labels: dict[str, list[str]]

    def for_label_studio(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "score": self.score, "result": self.result}


@dataclass
class LabelSummary:
    tasks: int
    labeled: int = 0  # predicted by this run
    skipped: int = 0  # already predicted with the same model version
    failed: int = 0
    seconds: float = 0.0  # labeling time (model and store), without loading the model
    interrupted: bool = False
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tasks_per_s(self) -> float:
        return self.labeled / self.seconds if self.seconds > 0 else 0.0

    def fail(self, item: InputTask, message: str) -> None:
        self.failed += 1
        self.failures.append({"task": item.id, "where": item.where, "error": message})

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["tasks_per_s"] = round(self.tasks_per_s, 3)
        return out


# -- the store -------------------------------------------------------------------------------------


def stored_predictions(session: Session, project_id: str, version: str) -> dict[int, Labeled]:
    """Predictions already stored for the project with this model version, by task id."""
    statement = select(Prediction).where(Prediction.project_id == project_id, Prediction.model_version == version)
    return {
        row.task_id: Labeled(row.task_id, row.model_version, row.score, row.result, row.labels)
        for row in session.exec(statement)
        if row.task_id is not None
    }


def _store(session: Session, plan: RunPlan, pairs: list[tuple[InputTask, TaskPrediction]]) -> dict[int, Labeled]:
    rows = [p.row(plan.project_id, item.id, plan.prompt.version_id, plan.model_version) for item, p in pairs]
    try:
        repo.save_predictions(session, rows)  # one transaction: the whole chunk is stored, or none of it
    except SQLAlchemyError as exc:
        session.rollback()
        raise StoreError(f"cannot store predictions: {exc}") from None
    return {item.id: Labeled(item.id, plan.model_version, p.score, p.result, p.labels) for item, p in pairs}


# -- labeling --------------------------------------------------------------------------------------


def task_error(item: InputTask, exc: TaskDataError) -> str:
    """The predictor's reason without its position in a one-task list, prefixed by where the task is."""
    reason = str(exc)
    for lead in (f"task 0 (id {item.task.get('id')})", "task 0"):
        if reason.startswith(lead):
            reason = reason[len(lead) :].lstrip(": ")
            break
    return f"{describe(item)}: {reason}"


def describe(item: InputTask) -> str:
    """``line 12``, or ``item 3 (task 17)`` when the task's id is not its position."""
    return item.where if item.where.endswith(f" {item.id}") else f"{item.where} (task {item.id})"


def _predict(
    engine: Engine, plan: RunPlan, chunk: list[InputTask], summary: LabelSummary, max_chars: int, response_tokens: int
) -> list[tuple[InputTask, TaskPrediction]]:
    """Predictions for a chunk; if the model fails on it, task by task, so one bad task fails alone."""
    try:
        tasks = [i.task for i in chunk]
        preds = label_tasks(
            engine, plan.schema, tasks, plan.prompt, max_chars=max_chars, response_max_tokens=response_tokens
        )
        return list(zip(chunk, preds, strict=True))
    except EngineUnavailable:
        raise  # the model server is down: stop (a rerun resumes), never mark its tasks failed
    except (TaskDataError, RuntimeError, ValueError, IndexError) as exc:
        if len(chunk) == 1:
            log.debug("task %s failed", chunk[0].id, exc_info=True)
            summary.fail(chunk[0], f"{describe(chunk[0])}: the model failed: {exc}")
            return []
    pairs = []
    for item in chunk:
        pairs.extend(_predict(engine, plan, [item], summary, max_chars, response_tokens))
    return pairs


def label_items(
    engine: Engine,
    session: Session,
    plan: RunPlan,
    items: list[InputTask],
    *,
    chunk_size: int | None = None,
    max_chars: int | None = None,
    response_max_tokens: int = 0,
    known: dict[int, Labeled] | None = None,
    on_chunk: Callable[[dict[int, Labeled]], None] | None = None,
    progress: bool = False,
) -> tuple[LabelSummary, dict[int, Labeled]]:
    """Label the items not yet predicted with ``plan.model_version``; returns the summary and every prediction.

    ``known`` are predictions that exist elsewhere (in Label Studio) and are skipped like stored ones.
    ``on_chunk`` runs after each chunk is committed. Ctrl-C ends the run between two chunks' commits.
    A chunk is one engine batch by default: progress moves every batch, and a kill loses at most one.
    """
    chunk_size = chunk_size or getattr(engine, "batch_size", None) or 16
    max_chars = max_chars or settings.max_text_chars
    summary = LabelSummary(tasks=len(items))
    done = {**(known or {}), **stored_predictions(session, plan.project_id, plan.model_version)}
    results: dict[int, Labeled] = {}
    todo: list[InputTask] = []
    for item in items:
        if item.error:
            summary.fail(item, item.error)
        elif item.id in done:
            results[item.id] = done[item.id]
            summary.skipped += 1
        else:
            try:
                check_tasks(plan.schema, [item.task], max_chars)
            except TaskDataError as exc:
                summary.fail(item, task_error(item, exc))
                continue
            todo.append(item)

    bar = tqdm(
        total=len(todo),
        unit="task",
        desc=f"labeling ({summary.skipped} already done)" if summary.skipped else "labeling",
        disable=not progress or not todo,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )
    started = time.perf_counter()
    try:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            pairs = _predict(engine, plan, chunk, summary, max_chars, response_max_tokens)
            new = _store(session, plan, pairs)
            results.update(new)
            summary.labeled += len(new)
            if on_chunk and new:
                on_chunk(new)
            bar.update(len(chunk))
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.seconds = time.perf_counter() - started
        bar.close()
    return summary, results


# -- outputs ---------------------------------------------------------------------------------------


def score_version(
    engine: Engine, session: Session, project_id: str, schema: ProjectSchema, version: Any, items: list[InputTask], args
) -> tuple[str, LabelSummary, dict[int, Labeled]]:
    """``prompter eval``'s run of one prompt version over ``items`` (labels only, no free text): its model version,
    the summary and every prediction, resumable like ``prompter label``."""
    mv = model_version(version.id, engine.model_id)
    plan = RunPlan(project_id, schema, Prompt.of(version), mv)
    summary, predictions = label_items(
        engine,
        session,
        plan,
        items,
        chunk_size=args.chunk_size,
        max_chars=args.max_chars,
        response_max_tokens=0,  # scoring needs the labels only
        progress=not args.no_progress,
    )
    return mv, summary, predictions


def export_tasks(items: Iterable[InputTask], results: dict[int, Labeled], from_file: bool) -> list[dict[str, Any]]:
    """Tasks with their predictions, as Label Studio imports them; tasks without a prediction are left out."""
    out = []
    for item in items:
        labeled = results.get(item.id)
        if labeled is None:
            continue
        task: dict[str, Any] = {"id": item.id, "data": item.task["data"]}
        if from_file:
            task.update({k: v for k, v in item.task.items() if k in ("annotations", "meta")})
        others = [
            p
            for p in (item.task.get("predictions") or [] if from_file else [])
            if isinstance(p, dict) and p.get("model_version") != labeled.model_version
        ]
        task["predictions"] = [*others, labeled.for_label_studio()]
        out.append(task)
    return out


def studio_predictions(source: Source, version: str) -> dict[int, Labeled]:
    """Predictions the Label Studio project already has with this model version, by task id."""
    found = {}
    for item in source.items:
        for p in item.task.get("predictions") or []:
            if isinstance(p, dict) and p.get("model_version") == version:
                labels = {
                    r.get("from_name"): list((r.get("value") or {}).get("choices") or [])
                    for r in p.get("result") or []
                    if isinstance(r, dict) and r.get("type") == "choices"
                }
                found[item.id] = Labeled(item.id, version, float(p.get("score") or 0.0), p.get("result") or [], labels)
                break
    return found


# -- the command -----------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser`` (the `prompter` CLI's subcommand hook)."""
    parser.description = (
        "Label every task of a file or a Label Studio project with the local model. "
        "Resumable: predictions are stored chunk by chunk; a rerun skips tasks already predicted "
        "with the same model version (prompt version + model)."
    )
    parser.epilog = (
        "Exit codes: 0 done, 1 Label Studio/store/model failure, 2 bad options or input, "
        "3 done but some tasks failed, 130 interrupted (rerun to continue)."
    )
    add_source_arguments(parser)
    prompt = parser.add_argument_group("prompt (default: the project's active prompt version, else the default)")
    prompt.add_argument("--prompt", metavar="TEXT", help="prompt template; recorded as a prompt version")
    prompt.add_argument("--prompt-file", metavar="FILE", help="prompt template from a file")
    prompt.add_argument(
        "--response-max-tokens",
        type=int,
        metavar="N",
        help="tokens of free-text answer when the config has a response TextArea "
        "(default: as the service's bulk predictions, PROMPTER_RESPONSE_IN_BATCH)",
    )
    out = parser.add_argument_group("outputs")
    out.add_argument("--out", metavar="FILE.json", help="write tasks with predictions for Label Studio import")
    out.add_argument("--no-post", action="store_true", help="do not import predictions into the Label Studio project")
    out.add_argument("--json", metavar="PATH", help="write a machine-readable summary")
    parser.set_defaults(run=command)


def read_prompt(args: argparse.Namespace) -> str | None:
    if args.prompt is not None and args.prompt_file:
        raise InputError("give --prompt or --prompt-file, not both")
    if args.prompt_file:
        return read_text(args.prompt_file, "prompt file")
    return args.prompt


def response_tokens(args: argparse.Namespace) -> int:
    """Free-text answer length: as the service does for bulk predictions unless ``--response-max-tokens``."""
    if args.response_max_tokens is not None:
        return args.response_max_tokens
    return settings.response_max_tokens if settings.response_in_batch else 0


def run(args: argparse.Namespace, engine: Engine | None = None) -> int:
    total_started = time.perf_counter()
    prompt_text = read_prompt(args)
    if args.response_max_tokens is not None and args.response_max_tokens < 0:
        raise InputError("--response-max-tokens must be 0 or more")
    source = open_source(args)
    for note in source.notes:
        say(PROG, note)
    if args.out:
        remove_stale_partials(args.out)
    session = open_store(args.db)
    load_started = time.perf_counter()
    if engine is None:
        say(PROG, f"loading the model ({args.model or settings.model})")
        engine = load_engine_for(args)
    elif args.batch_size and hasattr(engine, "batch_size"):
        engine.batch_size = args.batch_size
    load_seconds = time.perf_counter() - load_started
    version = project_prompt(session, source, prompt_text)
    plan = RunPlan(source.project_id, source.schema, Prompt.of(version), model_version(version.id, engine.model_id))

    post = source.studio is not None and not args.no_post
    known: dict[int, Labeled] = {}
    posted = 0
    on_chunk = None
    if source.studio is not None:
        known = studio_predictions(source, plan.model_version)
        if post:
            ids = {item.id for item in source.items}
            stored = stored_predictions(session, plan.project_id, plan.model_version)
            missing = [(tid, p.for_label_studio()) for tid, p in stored.items() if tid in ids and tid not in known]
            posted += source.studio.post_predictions(missing)  # stored by an earlier run that stopped before posting

            def on_chunk(new: dict[int, Labeled]) -> None:
                nonlocal posted
                posted += source.studio.post_predictions((tid, p.for_label_studio()) for tid, p in new.items())

    say(PROG, f"{len(source.items)} tasks from {source.description}; model version {plan.model_version}")
    summary, results = label_items(
        engine,
        session,
        plan,
        source.items,
        chunk_size=args.chunk_size,
        max_chars=args.max_chars,
        response_max_tokens=response_tokens(args),
        known=known,
        on_chunk=on_chunk,
        progress=not args.no_progress,
    )
    for failure in summary.failures[:20]:
        say(PROG, f"failed: {failure['error']}")
    if summary.failed > 20:
        say(PROG, f"... and {summary.failed - 20} more failed tasks (all listed in --json)")

    wrote = None
    if not summary.interrupted and args.out:
        exported = export_tasks(source.items, results, from_file=source.studio is None)
        if exported:
            wrote = write_json_atomic(args.out, exported)
        else:
            say(PROG, f"no task has a prediction: {args.out} not written")
    report = {
        **summary.as_dict(),
        "project_id": plan.project_id,
        "source": source.description,
        "prompt_version_id": plan.prompt.version_id,
        "model_version": plan.model_version,
        "batch_size": getattr(engine, "batch_size", None),
        "chunk_size": args.chunk_size or getattr(engine, "batch_size", None),
        "model_load_seconds": round(load_seconds, 3),
        "total_seconds": round(time.perf_counter() - total_started, 3),
        "posted": posted,
        "out": str(wrote) if wrote else None,
    }
    if args.json:
        write_json_atomic(args.json, report, indent=2)
    line = (
        f"{summary.tasks} tasks: {summary.labeled} labeled, {summary.skipped} skipped (already predicted), "
        f"{summary.failed} failed in {summary.seconds:.1f} s ({summary.tasks_per_s:.2f} tasks/s)"
    )
    if post:
        line += f"; {posted} predictions posted to Label Studio"
    if summary.interrupted:
        say(PROG, f"interrupted: {line}. Stored predictions are kept; rerun the same command to continue.")
        return EXIT_INTERRUPTED
    say(PROG, line + (f"; wrote {wrote}" if wrote else ""))
    return EXIT_PARTIAL if summary.failed else EXIT_OK


def main(argv: list[str] | None = None, engine: Engine | None = None) -> int:
    """Entry point of `prompter label`; ``engine`` is for tests and embedding (default: load the model)."""
    parser = argparse.ArgumentParser(prog=PROG)
    configure(parser)
    return run_command(PROG, run, parser.parse_args(argv), engine)


def command(args: argparse.Namespace) -> int:
    """What `prompter <command>` runs with the parsed options."""
    return run_command(PROG, run, args, None)


if __name__ == "__main__":
    sys.exit(main())
