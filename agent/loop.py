"""Refinement: try each strategy, score every candidate against the active prompt on validation tasks, and
propose the best one that is significantly better. Runs in one background worker thread per process; the
database lease (one ``running`` refinement_run row per project) keeps it to one refinement per project
across threads and processes.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from agent import review
from agent.corrections import latest_correction_id, list_corrections, new_disagreements
from agent.evaluate import (
    TEST_NAME,
    NoAnnotations,
    Scored,
    compare,
    folds,
    hash_order,
    score,
)
from agent.strategies import Candidate, Context, Mistake, StrategyError, registry
from constraints.base import Engine
from constraints.errors import Conflict, NotFound, PrompterError
from service.labeling import ConfigError, ProjectSchema, parse_config
from service.predictor import LeaveOut, Predict, Prompt, direct_predictor, prepare
from service.projects import ensure_prompt
from service.settings import AgentSettings, settings
from service.store import repo
from service.store.models import RUNNING, Proposal, RefinementRun, utcnow
from service.store.tasks import AnnotatedTask, annotated_tasks

log = logging.getLogger(__name__)


class RefinementBusy(Conflict):
    """Another refinement of the project is running (the API answers 409)."""


class LeaseLost(PrompterError):
    """This run's lease expired and another run took the project over."""


# -- the lease ---------------------------------------------------------------------------------------


def start_run(session: Session, project_id: str, trigger: str, lease_seconds: float) -> RefinementRun:
    """Take the project's refinement lease: a new ``running`` row, refused by the unique partial index while
    another one runs. A running row whose lease passed is marked failed first (its worker died)."""
    now = utcnow()
    session.exec(
        update(RefinementRun)
        .where(
            col(RefinementRun.project_id) == project_id,
            col(RefinementRun.status) == RUNNING,
            col(RefinementRun.lease_until) < now,
        )
        .values(status="failed", error="lease expired (the worker stopped)", finished_at=now)
        .execution_options(synchronize_session="fetch")  # SQLite hands back naive datetimes: compare in SQL
    )
    if repo.get_project(session, project_id) is None:
        raise NotFound(f"no project {project_id}")
    run = RefinementRun(
        project_id=project_id,
        trigger=trigger,
        lease_until=now + timedelta(seconds=lease_seconds),
        corrections_seen=latest_correction_id(session, project_id),
    )
    session.add(run)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise RefinementBusy(f"a refinement of project {project_id} is already running") from None
    session.refresh(run)
    return run


def renew(session: Session, run: RefinementRun, lease_seconds: float) -> None:
    """Extend the lease; LeaseLost if the row is no longer ours to run."""
    result = session.exec(
        update(RefinementRun)
        .where(col(RefinementRun.id) == run.id, col(RefinementRun.status) == RUNNING)
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
    )
    session.commit()
    if result.rowcount != 1:
        raise LeaseLost(f"refinement run {run.id} lost its lease")


def finish_run(
    session: Session, run: RefinementRun, status: str, error: str | None = None, summary: dict | None = None
) -> None:
    session.exec(
        update(RefinementRun)
        .where(col(RefinementRun.id) == run.id, col(RefinementRun.status) == RUNNING)
        .values(status=status, error=error, summary=summary, finished_at=utcnow())
    )
    session.commit()
    session.refresh(run)


def running(session: Session, project_id: str) -> RefinementRun | None:
    statement = select(RefinementRun).where(RefinementRun.project_id == project_id, RefinementRun.status == RUNNING)
    return session.exec(statement).first()


def list_runs(session: Session, project_id: str) -> list[RefinementRun]:
    statement = select(RefinementRun).where(RefinementRun.project_id == project_id)
    return list(session.exec(statement.order_by(col(RefinementRun.id).desc())))


# -- one refinement ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    run_id: int
    proposal: Proposal | None
    candidates: list[dict[str, Any]] = field(default_factory=list)  # every candidate tried, with its verdict
    failed: list[dict[str, str]] = field(default_factory=list)  # strategies that failed, with the reason


def project_schema(session: Session, project_id: str) -> ProjectSchema:
    project = repo.get_project(session, project_id)
    if project is None or not project.label_config:
        raise NoAnnotations(f"project {project_id} is not set up: no labeling config")
    try:
        schema = parse_config(project.label_config, settings.prompt_prefix, settings.response_name)
    except ConfigError as exc:
        raise NoAnnotations(f"project {project_id}: {exc}") from None
    if not schema.choices:
        raise NoAnnotations(f"project {project_id} has no Choices control for the agent to improve")
    return schema


def check_refinable(session: Session, project_id: str) -> None:
    """NoAnnotations (with the reason) unless the project has annotated tasks the agent can learn from."""
    schema = project_schema(session, project_id)
    tasks = annotated_tasks(session, project_id, schema)
    if len(tasks) < 2:
        have = "no annotated tasks" if not tasks else "only one annotated task"
        raise NoAnnotations(
            f"project {project_id} has {have} with known task data; the agent needs at least two "
            "(some to learn from, some to validate on)"
        )


def _mistakes(session: Session, project_id: str, tasks_by_id: dict, base_version_id: int) -> list[Mistake]:
    """Disagreements on example-side tasks; those made under the base version first (they are current)."""
    rows = [c for c in list_corrections(session, project_id, disagreements_only=True) if c.task_id in tasks_by_id]
    rows.sort(key=lambda c: (c.prompt_version_id != base_version_id, -c.id))
    return [Mistake(tasks_by_id[c.task_id], c.control, tuple(c.gold), tuple(c.predicted)) for c in rows]


def _progress(session: Session, run: RefinementRun, **progress: Any) -> None:
    """What a running refinement is doing, in its summary, for the review page to show."""
    session.exec(
        update(RefinementRun)
        .where(col(RefinementRun.id) == run.id, col(RefinementRun.status) == RUNNING)
        .values(summary={"progress": progress})
    )
    session.commit()


def _latency(predict: Predict, schema, prompt: Prompt, tasks: list[AnnotatedTask], engine: Engine) -> float:
    """Median seconds for one task alone, as a Shift+Enter asks (through the same model queue)."""
    times = []
    for task in tasks[:3]:
        started = time.perf_counter()
        one = [task.as_task()]
        predict(schema, one, prompt, prepare(engine, schema, one, prompt, LeaveOut(frozenset({task.task_id}))))
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3) if times else 0.0


def refine(
    session: Session,
    engine: Engine,
    project_id: str,
    trigger: str = "api",
    cfg: AgentSettings | None = None,
    predict: Predict | None = None,
    run: RefinementRun | None = None,
) -> Outcome:
    """One refinement of ``project_id``, synchronously. Takes the lease unless ``run`` (already leased) is given.

    Raises NoAnnotations before anything is written when there is nothing to learn from, RefinementBusy when
    another refinement holds the lease. A strategy that fails is recorded in the run's summary with its reason.
    """
    cfg = cfg or settings.agent
    predict = predict or direct_predictor(engine)
    if run is None:
        check_refinable(session, project_id)
        run = start_run(session, project_id, trigger, cfg.lease_seconds)
    try:
        outcome = _refine(session, engine, project_id, run, cfg, predict)
    except BaseException as exc:
        session.rollback()
        finish_run(session, run, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return outcome


def _refine(
    session: Session, engine: Engine, project_id: str, run: RefinementRun, cfg: AgentSettings, predict: Predict
) -> Outcome:
    """Cross-validated refinement: each strategy's candidate (built from every annotated task) is checked
    against what was proposed or active before, then validated fold by fold, each fold by a candidate the
    strategy built without that fold's tasks. The pooled paired answers decide."""
    started = time.perf_counter()
    schema = project_schema(session, project_id)
    tasks = annotated_tasks(session, project_id, schema)
    if len(tasks) < 2:
        raise NoAnnotations(f"project {project_id} has fewer than two annotated tasks with known data")
    base = ensure_prompt(session, project_id, schema)
    validated = hash_order(tasks, cfg.seed)[: cfg.max_validation]
    parts = folds(validated, cfg.folds, cfg.seed)
    ordered = [t for part in parts for t in part]
    all_mistakes = _mistakes(session, project_id, {t.task_id: t for t in tasks}, base.id)
    strategies = registry()
    total = len(ordered) * (1 + len(cfg.strategies))
    done = 0

    def tick(strategy: str) -> None:
        _progress(session, run, strategy=strategy, scored=done, total=total, folds=len(parts))

    def context(train: list[AnnotatedTask]) -> Context:
        ids = {t.task_id for t in train}
        mistakes = [m for m in all_mistakes if m.task.task_id in ids]
        return Context(engine, schema, base.text, base.examples, train, mistakes, cfg, predict, base.decision)

    tick("the active prompt")
    base_parts = []
    for part in parts:  # as it serves: every task retrieves from the active pool without itself
        base_parts.append(score(predict, engine, schema, Prompt.of(base), part, set(), leave_one_out=True))
        done += len(part)
        tick("the active prompt")
    base_scored = Scored.join(base_parts)
    renew(session, run, cfg.lease_seconds)

    outcome = Outcome(run.id, None)
    best: tuple[Candidate, tuple, Any, Scored] | None = None
    for name in cfg.strategies:
        t0 = time.perf_counter()
        tick(name)
        try:
            candidate = strategies[name](context(tasks))
        except StrategyError as exc:
            log.warning("project %s: strategy %s failed: %s", project_id, name, exc)
            outcome.failed.append({"strategy": name, "reason": str(exc)})
            outcome.candidates.append({"strategy": name, "verdict": "failed", "reason": str(exc)})
            done += len(ordered)
            continue
        if candidate is None or (candidate.text, candidate.examples, candidate.decision) == (
            base.text,
            base.examples,
            base.decision,
        ):
            outcome.candidates.append({"strategy": name, "verdict": "nothing to propose"})
            done += len(ordered)
            continue
        repeat = review.seen_before(session, project_id, candidate.text, candidate.examples)
        if repeat is not None:
            log.info("project %s: %s skipped: %s", project_id, name, repeat)
            outcome.candidates.append({"strategy": name, "verdict": "skipped", "reason": repeat})
            done += len(ordered)
            continue
        made = time.perf_counter() - t0
        cand_parts = []
        for i, part in enumerate(parts):
            train = [t for t in tasks if t.task_id not in {v.task_id for v in part}]
            try:
                fold = strategies[name](context(train))
            except StrategyError:
                fold = None
            if fold is None:  # nothing to offer without this fold: the base prompt's answers stand
                cand_parts.append(base_parts[i])
            else:  # the fold's own pool holds no task of the fold; a pool kept from the base hides each task
                fold_prompt = Prompt(fold.text, fold.examples, None, fold.decision)
                cand_parts.append(score(predict, engine, schema, fold_prompt, part, set(), True))
            done += len(part)
            tick(name)
        scored = Scored.join(cand_parts)
        cost = {
            "strategy_tokens": candidate.tokens,
            "strategy_seconds": round(candidate.seconds or made, 3),
            "evaluation_seconds": round(scored.seconds + base_scored.seconds, 3),
            "seconds": round((candidate.seconds or made) + scored.seconds + base_scored.seconds, 3),
            "tokens": int(candidate.tokens + (scored.prompt_tokens + base_scored.prompt_tokens) * len(ordered)),
        }
        comparison = compare(base_scored, scored, ordered, cfg.alpha, cost)
        comparison.metrics.update(
            {
                "strategy": name,
                "note": candidate.note,
                "examples_seen": len(tasks),
                "folds": len(parts),
                "validation": "cross-validation: every annotated task scored by a candidate built without its fold",
                "split_seed": cfg.seed,
            }
        )
        verdict = "significant" if comparison.significant else "not significant"
        outcome.candidates.append(
            {
                "strategy": name,
                "verdict": verdict,
                "accuracy": comparison.metrics["accuracy"],
                "p_value": comparison.p_value,
                "fixes": len(comparison.fixes),
                "breaks": len(comparison.breaks),
                "tasks_needed": comparison.metrics["tasks_needed"],
            }
        )
        log.info("project %s: %s %s (%s)", project_id, name, verdict, comparison.metrics["accuracy"])
        gain = (scored.accuracy, comparison.metrics["macro_f1"]["after"])
        if comparison.significant and (best is None or gain > best[1]):
            best = (candidate, gain, comparison, scored)
        renew(session, run, cfg.lease_seconds)

    if best is not None:
        candidate, _, comparison, _ = best
        tick("measuring latency")
        comparison.metrics["latency_s"] = {
            "before": _latency(predict, schema, Prompt.of(base), ordered, engine),
            "after": _latency(
                predict, schema, Prompt(candidate.text, candidate.examples, None, candidate.decision), ordered, engine
            ),
            "note": "one task alone, median of 3, through the model queue",
        }
        if candidate.examples and candidate.examples.get("pool"):
            comparison.metrics["pool"] = {
                "from_examples": len(candidate.examples["pool"]),
                "shipped": len(candidate.examples["pool"]),
                "note": "the pool holds every annotated task; each fold was validated by a pool without it",
            }
        session.exec(
            update(Proposal)
            .where(col(Proposal.project_id) == project_id, col(Proposal.status) == "pending")
            .values(status="superseded", decided_at=utcnow(), reason="a newer proposal replaced it")
        )
        proposal = Proposal(
            project_id=project_id,
            run_id=run.id,
            base_version_id=base.id,
            strategy=candidate.strategy,
            text=candidate.text,
            examples=candidate.examples,
            decision=candidate.decision,
            metrics=comparison.metrics,
        )
        session.add(proposal)
        session.commit()
        session.refresh(proposal)
        outcome.proposal = proposal
    gains = [c for c in outcome.candidates if c.get("tasks_needed")]
    summary = {
        "base_version_id": base.id,
        "base_accuracy": round(base_scored.accuracy, 4),
        "examples": len(tasks),
        "validation": len(ordered),
        "folds": len(parts),
        "test": TEST_NAME,
        "alpha": cfg.alpha,
        "candidates": outcome.candidates,
        "proposal_id": outcome.proposal.id if outcome.proposal else None,
        "tasks_needed": min(c["tasks_needed"] for c in gains) if gains and outcome.proposal is None else None,
        "seconds": round(time.perf_counter() - started, 3),
    }
    finish_run(session, run, "done", summary=summary)
    return outcome


# -- the background worker ----------------------------------------------------------------------------


EngineProvider = Callable[[], Engine]
SessionFactory = Callable[[], Session]


class Worker:
    """One daemon thread running agent jobs in order, so no request ever waits for the agent."""

    def __init__(self, engine: EngineProvider, sessions: SessionFactory, predictor=None) -> None:
        self.engine = engine
        self.sessions = sessions
        self.predictor = predictor  # engine -> Predict; None: call the engine directly
        self._jobs: queue.Queue[tuple[Callable[..., Any], tuple]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="agent-worker", daemon=True)
                self._thread.start()
        self._jobs.put((job, args))

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job ran (tests, shutdown); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._jobs.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _loop(self) -> None:
        while True:
            job, args = self._jobs.get()
            try:
                job(*args)
            except Exception:
                log.exception("agent job %s failed", getattr(job, "__name__", job))
            finally:
                self._jobs.task_done()

    def predict_for(self, engine: Engine) -> Predict:
        return self.predictor(engine) if self.predictor else direct_predictor(engine)


def run_leased(worker: Worker, project_id: str, run_id: int, cfg: AgentSettings) -> None:
    """Worker job: carry out a refinement whose lease was taken when it was requested."""
    with worker.sessions() as session:
        run = session.get(RefinementRun, run_id)
        if run is None or run.status != RUNNING:
            return
        try:
            engine = worker.engine()
        except Exception as exc:
            finish_run(session, run, "failed", error=f"the model is not available: {exc}")
            return
        try:
            renew(session, run, cfg.lease_seconds)
            refine(session, engine, project_id, run.trigger, cfg, worker.predict_for(engine), run=run)
        except (NoAnnotations, LeaseLost) as exc:
            log.warning("refinement %s of project %s stopped: %s", run_id, project_id, exc)


def request_refinement(
    worker: Worker, session: Session, project_id: str, trigger: str = "api", cfg: AgentSettings | None = None
) -> RefinementRun:
    """Check, take the lease and queue a refinement; returns at once with the ``running`` run to poll.

    NoAnnotations or RefinementBusy are raised here, synchronously, so the API can answer 409 with the reason.
    """
    cfg = cfg or settings.agent
    check_refinable(session, project_id)
    run = start_run(session, project_id, trigger, cfg.lease_seconds)
    worker.submit(run_leased, worker, project_id, run.id, cfg)
    return run


def maybe_refine(worker: Worker, session: Session, project_id: str, cfg: AgentSettings | None = None) -> bool:
    """Start a refinement when enough new disagreements arrived since the last one; True if one started."""
    cfg = cfg or settings.agent
    last = session.exec(
        select(RefinementRun).where(RefinementRun.project_id == project_id).order_by(col(RefinementRun.id).desc())
    ).first()
    if last is not None and last.status == RUNNING:
        return False
    if new_disagreements(session, project_id, last.corrections_seen if last else 0) < cfg.disagreements_trigger:
        return False
    try:
        request_refinement(worker, session, project_id, "disagreements", cfg)
    except (NoAnnotations, RefinementBusy) as exc:
        log.info("project %s: no refinement started: %s", project_id, exc)
        return False
    return True
