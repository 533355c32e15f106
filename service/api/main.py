"""All routers, mounted in one place."""

from fastapi import APIRouter

from service.api.routes import (
    activity,
    health,
    metrics,
    predict,
    projects,
    prompts,
    proposals,
    refinements,
    review,
    setup,
    versions,
    webhook,
)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(setup.router)
api_router.include_router(predict.router)
api_router.include_router(webhook.router)
api_router.include_router(versions.router)
api_router.include_router(metrics.router)
api_router.include_router(projects.router)
api_router.include_router(prompts.router)
api_router.include_router(proposals.router)
api_router.include_router(refinements.router)
api_router.include_router(activity.router)
api_router.include_router(review.router)
