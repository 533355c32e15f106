"""The FastAPI application: Label Studio's ML backend protocol over the store and the model engine."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from agent import hooks, live_eval
from constraints.base import Engine
from service.api.auth import auth_enabled, require_basic_auth
from service.api.errors import install_error_handlers
from service.api.main import api_router
from service.api.reviewers import describe_access
from service.api.security import BodyLimit, CrossSiteGuard
from service.api.telemetry import LatencyMiddleware
from service.runtime import host
from service.settings import settings
from service.store.db import migrate

log = logging.getLogger(__name__)


def create_app(engine: Engine | None = None, load_model: bool = True) -> FastAPI:
    """The app; with ``engine`` it serves that engine, else it loads the configured model at startup.

    ``load_model=False`` without an engine leaves the model state as it is ("loading" until someone calls
    ``host.set_engine``): useful in tests of the loading behaviour.
    """
    if engine is not None:
        host.set_engine(engine)
    if bool(settings.basic_auth_user) != bool(settings.basic_auth_pass):
        log.warning("basic auth is off: set both BASIC_AUTH_USER and BASIC_AUTH_PASS to turn it on")
    log.info("%s; request bodies up to %d bytes", describe_access(), settings.body_limit())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(migrate)
        hooks.install()  # the agent learns from the webhooks this app receives
        live_eval.install()  # every new prompt version is measured on the annotated tasks
        if engine is None and load_model:
            host.start_loading()
        yield

    protected = auth_enabled()
    app = FastAPI(
        title="Prompter",
        summary="A Label Studio ML backend that labels with a local, label-constrained LLM.",
        lifespan=lifespan,
        dependencies=[Depends(require_basic_auth)],
        openapi_url=None if protected else "/openapi.json",  # docs would bypass the auth dependency
    )
    install_error_handlers(app)
    app.add_middleware(LatencyMiddleware)
    app.add_middleware(BodyLimit)
    app.add_middleware(CrossSiteGuard)  # outermost: a cross-site request is refused before anything else runs
    app.include_router(api_router)
    return app
