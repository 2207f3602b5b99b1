"""Liveness, readiness and Prometheus metrics (no authentication: for the orchestrator and scraper)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST

from serving.api.deps import EngineDep, MetricsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "No valid model bundle: listings go to human review"}})
async def readyz(engine: EngineDep, response: Response) -> dict[str, object]:
    """Ready when a valid bundle serves; 503 while every listing falls back to human review."""
    if not engine.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"ready": engine.ready, "model_version": engine.model_version, "policy_version": engine.policy.version}


@router.get("/metrics", response_class=Response)
async def metrics(engine: EngineDep, registry: MetricsDep) -> Response:
    """Prometheus text format."""
    registry.model_ready.set(1 if engine.ready else 0)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
