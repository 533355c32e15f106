"""Refinement: try each strategy, score every candidate against the active prompt on validation tasks, and
propose the best one that is significantly better. Runs in one background worker thread per process; the
database lease (one ``running`` refinement_run row per project) keeps it to one refinement per project
across threads and processes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from agent.corrections import latest_correction_id, list_corrections, new_disagreements
from agent.evaluate import NoAnnotations, Predict, compare, direct_predictor, score, split
from agent.strategies import Candidate, Context, Mistake, StrategyError, registry
from constraints.base import Engine
from constraints.errors import Conflict, NotFound, PrompterError
from service.demonstrations import pool_from_tasks
from service.labeling import ConfigError, ProjectSchema, parse_config
from service.predictor import Prompt
from service.projects import ensure_prompt
from service.settings import AgentSettings, settings
from service.store import repo
from service.store.models import RUNNING, Proposal, RefinementRun, utcnow
from service.store.tasks import annotated_tasks

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
    failed: list[Proposal] = field(default_factory=list)


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


def _record_failed(session: Session, project_id: str, run: RefinementRun, base_id: int, name: str, reason: str):
    proposal = Proposal(
        project_id=project_id, run_id=run.id, base_version_id=base_id, strategy=name, text="", status="failed",
        reason=reason, decided_at=utcnow(),
    )  # fmt: skip
    session.add(proposal)
    session.commit()
    session.refresh(proposal)
    return proposal


def _score_version(predict: Predict, engine: Engine, schema, prompt: Prompt, validation, cfg: AgentSettings):
    """A prompt scored on validation as it would serve: a pool that holds every annotated task (a refit) is
    scored leave-one-out, so no task sees its own label; without refit the validation tasks stay hidden."""
    hidden = {t.task_id for t in validation}
    if cfg.refit_pool:
        return score(predict, engine, schema, prompt, validation, set(), leave_one_out=True)
    return score(predict, engine, schema, prompt, validation, hidden)


def _with_validation_in_pool(examples: dict[str, Any] | None, schema, validation, cfg: AgentSettings):
    """The pool shipped: the validated pool plus the validation tasks (a refit on every annotation)."""
    if not examples or not examples.get("pool") or not cfg.refit_pool:
        return examples
    have = {e["task_id"] for e in examples["pool"]}
    extra = [e for e in pool_from_tasks(schema, validation) if e["task_id"] not in have]
    return {**examples, "pool": sorted(examples["pool"] + extra, key=lambda e: e["task_id"])}


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
    another refinement holds the lease. A strategy that fails leaves a ``failed`` proposal with its reason.
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
    started = time.perf_counter()
    schema = project_schema(session, project_id)
    tasks = annotated_tasks(session, project_id, schema)
    if len(tasks) < 2:
        raise NoAnnotations(f"project {project_id} has fewer than two annotated tasks with known data")
    base = ensure_prompt(session, project_id, schema)
    examples, validation = split(tasks, cfg.validation_fraction, cfg.seed)
    validation = validation[: cfg.max_validation]
    by_id = {t.task_id: t for t in examples}
    mistakes = _mistakes(session, project_id, by_id, base.id)
    ctx = Context(engine, schema, base.text, base.examples, examples, mistakes, cfg, predict, base.decision)
    base_scored = _score_version(
        predict, engine, schema, Prompt(base.text, base.examples, None, base.decision), validation, cfg
    )
    renew(session, run, cfg.lease_seconds)

    strategies = registry()
    outcome = Outcome(run.id, None)
    best: tuple[Candidate, Any] | None = None
    for name in cfg.strategies:
        t0 = time.perf_counter()
        try:
            candidate = strategies[name](ctx)
        except StrategyError as exc:
            log.warning("project %s: strategy %s failed: %s", project_id, name, exc)
            outcome.failed.append(_record_failed(session, project_id, run, base.id, name, str(exc)))
            outcome.candidates.append({"strategy": name, "verdict": "failed", "reason": str(exc)})
            continue
        if candidate is None or (candidate.text, candidate.examples, candidate.decision) == (
            base.text,
            base.examples,
            base.decision,
        ):
            outcome.candidates.append({"strategy": name, "verdict": "nothing to propose"})
            continue
        made = time.perf_counter() - t0
        shipped = _with_validation_in_pool(candidate.examples, schema, validation, cfg)
        scored = _score_version(
            predict, engine, schema, Prompt(candidate.text, shipped, None, candidate.decision), validation, cfg
        )
        cost = {
            "strategy_tokens": candidate.tokens,
            "strategy_seconds": round(candidate.seconds or made, 3),
            "evaluation_seconds": round(scored.seconds + base_scored.seconds, 3),
            "seconds": round((candidate.seconds or made) + scored.seconds + base_scored.seconds, 3),
            "tokens": int(candidate.tokens + (scored.prompt_tokens + base_scored.prompt_tokens) * len(validation)),
        }
        comparison = compare(base_scored, scored, validation, cfg.alpha, cost)
        comparison.metrics.update(
            {"strategy": name, "note": candidate.note, "examples_seen": len(examples), "split_seed": cfg.seed}
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
            }
        )
        log.info("project %s: %s %s (%s)", project_id, name, verdict, comparison.metrics["accuracy"])
        gain = (scored.accuracy, comparison.metrics["macro_f1"]["after"])
        if comparison.significant and (best is None or gain > best[1]):
            best = (candidate, gain, comparison)
        renew(session, run, cfg.lease_seconds)

    if best is not None:
        candidate, _, comparison = best
        shipped = _with_validation_in_pool(candidate.examples, schema, validation, cfg)
        if shipped is not candidate.examples:
            comparison.metrics["pool"] = {
                "from_examples": len(candidate.examples["pool"]),
                "shipped": len(shipped["pool"]),
                "note": "the pool holds every annotated task; each validation task was scored without itself",
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
            examples=shipped,
            decision=candidate.decision,
            metrics=comparison.metrics,
        )
        session.add(proposal)
        session.commit()
        session.refresh(proposal)
        outcome.proposal = proposal
    summary = {
        "base_version_id": base.id,
        "base_accuracy": round(base_scored.accuracy, 4),
        "examples": len(examples),
        "validation": len(validation),
        "candidates": outcome.candidates,
        "proposal_id": outcome.proposal.id if outcome.proposal else None,
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
