"""All routers, mounted in one place."""

from fastapi import APIRouter

from service.api.routes import health, metrics, predict, projects, setup, versions, webhook

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(setup.router)
api_router.include_router(predict.router)
api_router.include_router(webhook.router)
api_router.include_router(versions.router)
api_router.include_router(metrics.router)
api_router.include_router(projects.router)
