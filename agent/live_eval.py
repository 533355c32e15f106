"""Live evaluation: every new prompt version measured on the project's ground truth while the annotators work.

A version typed at /predict, accepted or activated, and, as annotations arrive, the active version and the
``PROMPTER_EVAL_RECENT`` newest others, are scored on the project's annotated tasks (the newest annotation of
each task is the truth; at most ``PROMPTER_EVAL_TASKS``, the most recently annotated first) through the one
decision path, each task retrieving from the pool without itself, as it serves new tasks. Each result is stored
as an ``Evaluation``, compared with the active version on the same tasks: fixes, breaks and the agent's
one-sided McNemar rule (``agent.evaluate.beats``).

One worker thread runs one evaluation at a time; a version already waiting is not queued twice, and a version
already measured on the same tasks against the same active version is not scored again. Its model calls go
through the model queue as background work, so /predict and /webhook never wait for it. A project without
annotated tasks records nothing; a failure (the model down, every annotated task's data gone) is stored with
its reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlmodel import Session

from agent.evaluate import TEST_NAME, NoAnnotations, beats, correct, label_f1, paired, task_f1
from agent.hooks import queued_predictor
from agent.loop import EngineProvider, SessionFactory, project_schema
from constraints.base import Engine
from service import metrics
from service.labeling import ProjectSchema
from service.predictor import LeaveOut, Predict, Prompt, TaskDataError, check_tasks, direct_predictor, prepare
from service.runtime import events, host
from service.settings import settings
from service.store import repo
from service.store.db import sql_engine
from service.store.models import AnnotationPublic, Evaluation, EvaluationCreate, PromptVersion
from service.store.tasks import AnnotatedTask, annotated_tasks
from service.versions import model_version

log = logging.getLogger(__name__)

SOURCE = "the project's annotations (newest per task)"

# -- ground truth ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroundTruth:
    """The annotated tasks an evaluation scores, a digest of them (task ids, gold labels, model) so two
    evaluations on the same truth can be paired, and why annotated tasks were left out."""

    tasks: list[AnnotatedTask]
    key: str
    left_out: list[str]
    answered: int  # annotated tasks that answer a Choices control, with data or not


def ground_truth(session: Session, project_id: str, schema: ProjectSchema, limit: int, model_id: str) -> GroundTruth:
    """At most ``limit`` annotated tasks, the most recently annotated first; tasks whose data is gone or can't
    be labeled are left out and named."""
    names = {c.name for c in schema.choices}
    answered = {a.task_id for a in repo.list_annotations(session, project_id) if set(a.choices or {}) & names}
    usable, unusable, left_out = [], set(), []
    for task in annotated_tasks(session, project_id, schema):
        try:
            check_tasks(schema, [task.as_task()], settings.max_text_chars)
        except TaskDataError as exc:
            unusable.add(task.task_id)
            left_out.append(f"task {task.task_id}: {exc}")
            continue
        usable.append(task)
    gone = sorted(answered - {t.task_id for t in usable} - unusable)
    if gone:
        left_out.insert(0, f"{len(gone)} annotated tasks have no stored data: {', '.join(map(str, gone[:20]))}")
    recency = repo.annotation_recency(session, project_id)
    usable.sort(key=lambda t: (-recency.get(t.task_id, 0), -t.task_id))
    chosen = usable[:limit]
    shape = [model_id, sorted([t.task_id, sorted((k, sorted(v)) for k, v in t.gold.items())] for t in chosen)]
    key = hashlib.sha256(json.dumps(shape).encode()).hexdigest()
    return GroundTruth(chosen, key, left_out, len(answered))


# -- scoring ------------------------------------------------------------------------------------------------


@dataclass
class Scoring:
    labels: list[dict[str, list[str]]]
    scores: list[float]
    correct: list[bool]
    seconds: float
    quality: list[float]  # per-task F1 (``agent.evaluate.task_f1``), what the pairing compares


def score_version(
    engine: Engine, predict: Predict, schema: ProjectSchema, prompt: Prompt, tasks: list[AnnotatedTask]
) -> Scoring:
    """The version's answers on ``tasks`` through the decision path, each task without itself in the pool."""
    started = time.perf_counter()
    as_tasks = [t.as_task() for t in tasks]
    contexts = prepare(engine, schema, as_tasks, prompt, LeaveOut(own=True), settings.max_text_chars)
    preds = predict(schema, as_tasks, prompt, contexts)
    labels = [p.labels for p in preds]
    return Scoring(
        labels,
        [float(p.score) for p in preds],
        [correct(p, t.gold) for p, t in zip(labels, tasks, strict=True)],
        time.perf_counter() - started,
        [task_f1(p, t.gold) for p, t in zip(labels, tasks, strict=True)],
    )


def figures(schema: ProjectSchema, tasks: list[AnnotatedTask], scoring: Scoring) -> dict[str, Any]:
    """The stored figures of one scoring: accuracy (every answered control right), macro- and micro-F1 over
    labels, ECE and the curves of the task scores, a confusion matrix for one single-choice control."""
    golds = [t.gold for t in tasks]
    per_label = label_f1(scoring.labels, golds)
    flat_gold = [[f"{c}/{x}" for c, xs in g.items() for x in xs] for g in golds]
    flat_pred = [
        [f"{c}/{x}" for c, xs in p.items() if c in g for x in xs] for p, g in zip(scoring.labels, golds, strict=True)
    ]
    out: dict[str, Any] = {
        "tasks": len(tasks),
        "accuracy": sum(scoring.correct) / len(tasks) if tasks else 0.0,
        "macro_f1": metrics.macro_f1(per_label),
        "micro_f1": metrics.micro_f1(flat_gold, flat_pred),
        "ece": metrics.expected_calibration_error(scoring.scores, scoring.correct),
        "per_label": {k: s.as_dict() for k, s in per_label.items()},
        "reliability": [asdict(b) for b in metrics.reliability_curve(scoring.scores, scoring.correct)],
        "coverage": [asdict(p) for p in metrics.accuracy_coverage(scoring.scores, scoring.correct)],
        "outcomes": {str(t.task_id): q for t, q in zip(tasks, scoring.quality, strict=True)},
        "seconds": round(scoring.seconds, 3),
        "confusion": None,
    }
    if len(schema.choices) == 1 and not schema.choices[0].label_set.multiple:
        name, names = schema.choices[0].name, list(schema.choices[0].label_set.labels)
        gold = [g.get(name, [""])[0] if g.get(name) else "" for g in golds]
        pred = [p.get(name, [""])[0] if p.get(name) else "" for p in scoring.labels]
        out["confusion"] = {"labels": names, "matrix": metrics.confusion_matrix(gold, pred, names)}
    return out


FIGURES = ("tasks", "accuracy", "macro_f1", "micro_f1", "ece", "per_label", "reliability", "coverage")
REUSED = (*FIGURES, "outcomes", "seconds", "confusion")


def comparison(mine: dict[str, float], base: Evaluation, alpha: float) -> dict[str, Any]:
    """Paired with the active version's evaluation on the same tasks: fixes, breaks, p-value, the verdict.
    Outcomes are per-task F1 (older rows stored true/false, read as 1 and 0)."""
    theirs = base.outcomes or {}
    ids = sorted((t for t in mine if t in theirs), key=int)
    up, down = paired([float(theirs[t]) for t in ids], [float(mine[t]) for t in ids])
    fixes, breaks = [int(ids[i]) for i in up], [int(ids[i]) for i in down]
    p, significant = beats(len(fixes), len(breaks), alpha)
    return {
        "compared_with_id": base.prompt_version_id,
        "compared_accuracy": base.accuracy,
        "fixes": fixes,
        "breaks": breaks,
        "p_value": p,
        "significant": significant,
    }


# -- one evaluation -----------------------------------------------------------------------------------------


def _store(session: Session, row: EvaluationCreate) -> Evaluation:
    return repo.save_evaluations(session, [row])[0]


def _row(version: PromptVersion, model_id: str, schema: ProjectSchema, trigger: str, **values: Any) -> EvaluationCreate:
    base: dict[str, Any] = {
        "project_id": version.project_id,
        "prompt_version_id": version.id,
        "run_id": uuid.uuid4().hex,
        "model_version": model_version(version.id, model_id),
        "source": SOURCE,
        "control": ",".join(c.name for c in schema.choices),
        "trigger": trigger,
        "tasks": 0,
        "accuracy": None,
        "macro_f1": None,
        "micro_f1": None,
        "ece": None,
    }
    return EvaluationCreate.model_validate({**base, **values})


def _measured(
    session: Session,
    engine: Engine,
    predict: Predict,
    schema: ProjectSchema,
    version: PromptVersion,
    truth: GroundTruth,
) -> dict[str, Any]:
    """The version's figures on ``truth``: those of an earlier evaluation on the very same tasks, else scored."""
    earlier = repo.latest_evaluation(session, version.id, truth.key)
    if earlier is not None:
        return {name: getattr(earlier, name) for name in REUSED}
    return figures(schema, truth.tasks, score_version(engine, predict, schema, Prompt.of(version), truth.tasks))


def _reason(truth: GroundTruth) -> str | None:
    return "; ".join(truth.left_out) or None


def evaluate_version(
    session: Session,
    engine: Engine,
    predict: Predict,
    version_id: int,
    trigger: str,
    limit: int | None = None,
    alpha: float | None = None,
) -> Evaluation | None:
    """Evaluate one version on its project's annotated tasks against the active version; the stored row (a new
    one, or the latest when nothing changed since). None, with nothing stored, when the version is gone or the
    project has no annotated task. Errors of the model or of a task are stored as a failed evaluation."""
    limit = limit or settings.eval_tasks
    alpha = settings.agent.alpha if alpha is None else alpha
    version = session.get(PromptVersion, version_id)
    if version is None:
        return None
    try:
        schema = project_schema(session, version.project_id)
    except NoAnnotations as exc:
        log.info("version %s not evaluated: %s", version_id, exc)
        return None
    truth = ground_truth(session, version.project_id, schema, limit, engine.model_id)
    if not truth.tasks:
        if not truth.answered:
            return None  # nothing to measure against: no annotations (the response says so)
        reason = f"no annotated task can be scored: {_reason(truth)}"
        return _store(session, _row(version, engine.model_id, schema, trigger, status="failed", reason=reason))
    active = repo.active_prompt(session, version.project_id)
    try:
        if active is None or active.id == version.id:
            latest = repo.latest_evaluation(session, version.id, truth.key)
            if latest is not None and latest.compared_with_id is None:
                return latest
            measured = _measured(session, engine, predict, schema, version, truth)
            row = _row(
                version, engine.model_id, schema, trigger, tasks_key=truth.key, reason=_reason(truth), **measured
            )
            return _store(session, row)
        latest = repo.latest_evaluation(session, version.id, truth.key)
        if latest is not None and latest.compared_with_id == active.id:
            return latest
        base = repo.latest_evaluation(session, active.id, truth.key)
        if base is None:
            base_figures = _measured(session, engine, predict, schema, active, truth)
            base_row = _row(active, engine.model_id, schema, "comparison", tasks_key=truth.key, **base_figures)
            base = _store(session, base_row)
        measured = _measured(session, engine, predict, schema, version, truth)
        compared = comparison(measured["outcomes"], base, alpha)
        row = _row(
            version,
            engine.model_id,
            schema,
            trigger,
            tasks_key=truth.key,
            reason=_reason(truth),
            **measured,
            **compared,
        )
        return _store(session, row)
    except Exception as exc:  # the model went down, a task failed: recorded, never raised into a request
        session.rollback()
        log.warning("evaluation of version %s failed: %s", version_id, exc)
        reason = f"{type(exc).__name__}: {exc}"
        return _store(session, _row(version, engine.model_id, schema, trigger, status="failed", reason=reason))


def record_unavailable(session: Session, version_id: int, trigger: str, exc: BaseException) -> Evaluation | None:
    """The model is not available: a failed evaluation with the reason, if the version has annotations to
    be measured on (a project without any records nothing)."""
    version = session.get(PromptVersion, version_id)
    if version is None:
        return None
    try:
        schema = project_schema(session, version.project_id)
    except NoAnnotations:
        return None
    model_id = host.model_id()
    if not ground_truth(session, version.project_id, schema, 1, model_id).answered:
        return None
    reason = f"the model is not available: {exc}"
    return _store(session, _row(version, model_id, schema, trigger, status="failed", reason=reason))


def evidence(session: Session, version_id: int) -> dict[str, Any] | None:
    """A typed version's latest comparison in a proposal's ``metrics`` shape (what accepting it was based on);
    None when it was never measured against an active version."""
    found = repo.latest_comparison(session, version_id)
    if found is None or found.active is None:
        return None
    mine, theirs = found.evaluation, found.active
    return {
        "evaluation_id": mine.id,
        "validation_tasks": mine.tasks,
        "validation": "live evaluation: the annotated tasks, each without itself in the pool",
        "accuracy": {"before": theirs.accuracy, "after": mine.accuracy},
        "macro_f1": {"before": theirs.macro_f1, "after": mine.macro_f1},
        "fixes": [{"task_id": t} for t in mine.fixes],
        "breaks": [{"task_id": t} for t in mine.breaks],
        "test": TEST_NAME,
        "p_value": mine.p_value,
        "alpha": settings.agent.alpha,
        "significant": mine.significant,
    }


# -- the background worker ----------------------------------------------------------------------------------


class LiveEvaluator:
    """One daemon thread evaluating versions one at a time, in the order asked; a version waiting is asked once."""

    def __init__(
        self,
        engine: EngineProvider,
        sessions: SessionFactory,
        predictor: Callable[[Engine], Predict] | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.predictor = predictor  # engine -> Predict; None: call the engine directly
        self._pending: dict[int, str] = {}  # version id -> trigger, in the order asked
        self._cv = threading.Condition()
        self._running = 0
        self._thread: threading.Thread | None = None
        self.done = 0  # evaluations run (stored or found up to date), for tests and the benchmark

    def request(self, version_id: int, trigger: str) -> bool:
        """Queue an evaluation of the version; False when it is already waiting (coalesced)."""
        with self._cv:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="live-eval", daemon=True)
                self._thread.start()
            if version_id in self._pending:
                return False
            self._pending[version_id] = trigger
            self._cv.notify_all()
            return True

    def request_project(self, project_id: str, trigger: str = "annotations") -> list[int]:
        """Re-evaluate the active version and the newest few others (``PROMPTER_EVAL_RECENT``); their ids."""
        with self.sessions() as session:
            ids = [v.id for v in repo.recent_versions(session, project_id, settings.eval_recent)]
        for version_id in ids:
            self.request(version_id, trigger)
        return ids

    def join(self, timeout: float | None = None) -> bool:
        """Wait until nothing is waiting or running (tests, the benchmark); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._pending or self._running:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left if left is not None else 1.0)
        return True

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    self._cv.wait()
                version_id = next(iter(self._pending))
                trigger = self._pending.pop(version_id)
                self._running += 1
            try:
                self.run(version_id, trigger)
            except Exception:
                log.exception("live evaluation of version %s failed", version_id)
            finally:
                with self._cv:
                    self._running -= 1
                    self.done += 1
                    self._cv.notify_all()

    def run(self, version_id: int, trigger: str) -> Evaluation | None:
        with self.sessions() as session:
            try:
                engine = self.engine()
            except Exception as exc:
                return record_unavailable(session, version_id, trigger, exc)
            predict = self.predictor(engine) if self.predictor else direct_predictor(engine)
            return evaluate_version(session, engine, predict, version_id, trigger)


_evaluator: LiveEvaluator | None = None


def evaluator() -> LiveEvaluator:
    global _evaluator
    if _evaluator is None:
        _evaluator = LiveEvaluator(host.ready_engine, lambda: Session(sql_engine()), queued_predictor)
    return _evaluator


def idle(timeout: float | None = None) -> bool:
    """Wait until the process's live evaluator has nothing waiting or running (tests, shutdown)."""
    return _evaluator is None or _evaluator.join(timeout)


def on_prompt_version(project_id: str, version_id: int, trigger: str) -> None:
    evaluator().request(version_id, trigger)


def on_annotation_saved(annotation: AnnotationPublic) -> None:
    evaluator().request_project(annotation.project_id)


def on_annotations_deleted(project_id: str | None, annotation_ids: list[int]) -> None:
    if project_id is not None:  # without it the next annotation of the project re-evaluates
        evaluator().request_project(project_id)


def catch_up() -> int:
    """Once the model is ready: every project's active and newest versions, measured on today's annotations
    (those already measured on the same tasks are found up to date and not scored again)."""
    with evaluator().sessions() as session:
        projects = [p.id for p in repo.list_projects(session)]
    return sum(len(evaluator().request_project(p, "catch_up")) for p in projects)


SUBSCRIPTIONS: tuple[tuple[list, Callable[..., None]], ...] = (
    (events.on_prompt_version, on_prompt_version),
    (events.on_annotation_saved, on_annotation_saved),
    (events.on_annotations_deleted, on_annotations_deleted),
    (events.on_engine_ready, catch_up),
)


def install(live: LiveEvaluator | None = None) -> LiveEvaluator:
    """Subscribe the live evaluator to new versions and annotations (idempotent); off with PROMPTER_EVAL_LIVE."""
    global _evaluator
    if live is not None:
        _evaluator = live
    if not settings.eval_live:
        log.info("live evaluation is off (PROMPTER_EVAL_LIVE=false)")
        return evaluator()
    for hooks, callback in SUBSCRIPTIONS:
        if callback not in hooks:
            hooks.append(callback)
    return evaluator()
