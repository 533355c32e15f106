"""POST /predict: label Label Studio's tasks with the current prompt; one result per task, same order."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, status
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from constraints.base import Engine
from service import budget, explain
from service.api.deps import SessionDep
from service.api.protocol import PredictRequest, PredictResponse, TaskResult
from service.labeling import ProjectSchema, parse_config
from service.predictor import Prompt, TaskPrediction
from service.projects import project_key, resolve_prompt
from service.runtime import host
from service.settings import settings
from service.store import repo
from service.store.models import as_task_id
from service.store.tasks import remember_tasks
from service.versions import model_version

log = logging.getLogger(__name__)

router = APIRouter(tags=["label-studio"])


@dataclass
class PredictPlan:
    """What one /predict request is answered with."""

    project_id: str
    schema: ProjectSchema
    prompt: Prompt
    engine: Engine


def _plan(session: Session, body: PredictRequest) -> PredictPlan:
    """Project, schema and prompt for the request; 503 before anything is written if the model isn't ready."""
    project_id = project_key(body.project, body.label_config)
    label_config = body.label_config
    if not label_config:
        project = repo.get_project(session, project_id)
        label_config = project.label_config if project else None
    if not label_config:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"the request has no label_config and project {project_id} was never set up",
        )
    schema = parse_config(label_config, settings.prompt_prefix, settings.response_name)
    engine = host.ready_engine()
    repo.upsert_project(session, project_id, label_config)
    context = body.params.context if body.params else None
    plan = PredictPlan(project_id, schema, Prompt.of(resolve_prompt(session, project_id, schema, context)), engine)
    # The model queue may keep the request waiting for minutes: hold no pooled connection meanwhile (the pool has
    # 15, the queue up to PROMPTER_QUEUE_SIZE requests; under load the rest timed out with a 500). The prompt's
    # fields were copied into the plan; _store checks out a connection again.
    session.close()
    return plan


def _store(session: Session, plan: PredictPlan, mv: str, tasks: list[Any], preds: list[TaskPrediction]) -> None:
    version_id = plan.prompt.version_id
    rows = [
        p.row(plan.project_id, as_task_id(task.get("id")), version_id, mv) for task, p in zip(tasks, preds, strict=True)
    ]
    try:
        repo.save_predictions(session, rows)
        remember_tasks(session, plan.project_id, tasks)  # the agent re-scores annotated tasks from this data
    except Exception:  # the annotator still gets the predictions; the log says they were not kept
        session.rollback()
        log.exception("predictions for project %s were returned but not stored", plan.project_id)


def _explain(session: Session, plan: PredictPlan, tasks: list[Any], preds: list[TaskPrediction]) -> None:
    try:
        explain.explain_predictions(session, plan.project_id, plan.schema, plan.prompt, tasks, preds)
    except Exception:  # the labels are the answer; the response box then says nothing rather than fail it
        session.rollback()
        log.exception("project %s: the response could not be explained", plan.project_id)


@router.post("/predict")
async def predict(body: PredictRequest, session: SessionDep) -> PredictResponse:
    """An empty ``tasks`` list is answered with an empty ``results`` list (nothing to do, no model needed)."""
    tasks = body.tasks
    if tasks is None:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail="the request has no tasks")
    if len(tasks) > settings.max_tasks_per_request:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"{len(tasks)} tasks in one request; the limit is {settings.max_tasks_per_request}",
        )
    if not tasks:
        return PredictResponse(results=[])
    started = time.perf_counter()
    plan = await run_in_threadpool(_plan, session, body)
    interactive = bool(body.params and body.params.context)
    limit = budget.task_token_budget(plan.engine)
    model_tasks, cuts, text_tokens = await run_in_threadpool(budget.cut_tasks, plan.engine, plan.schema, tasks, limit)
    with_response = interactive or len(tasks) == 1 or settings.response_in_batch
    cost = budget.estimate(plan.engine, plan.schema, text_tokens, with_response, host.response_tokens())
    if cost is not None and cost.too_long:
        log.warning("project %s: %d tasks refused: %s", plan.project_id, len(tasks), cost.detail(plan.project_id))
        raise HTTPException(status_code=status.HTTP_413_CONTENT_TOO_LARGE, detail=cost.detail(plan.project_id))
    if any(cuts):
        log.info("project %s: %d task texts cut to %d tokens", plan.project_id, sum(map(bool, cuts)), limit)
    predictions = await host.run_predictions(
        plan.engine, plan.schema, model_tasks, plan.prompt, interactive=interactive
    )
    if with_response and explain.explains():
        await run_in_threadpool(_explain, session, plan, model_tasks, predictions)
    for prediction, task_cuts in zip(predictions, cuts, strict=True):
        prediction.result = budget.mark_cut(prediction.result, task_cuts)
    mv = model_version(plan.prompt.version_id, plan.engine.model_id)
    await run_in_threadpool(_store, session, plan, mv, tasks, predictions)
    log.info(
        "project %s: %d tasks labeled with %s in %.2f s",
        plan.project_id,
        len(tasks),
        mv,
        time.perf_counter() - started,
    )
    return PredictResponse(results=[TaskResult(result=p.result, score=p.score, model_version=mv) for p in predictions])
