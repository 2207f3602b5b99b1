"""Liveness, readiness and Prometheus metrics (no authentication: for the orchestrator and scraper)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from serving.api.deps import EngineDep, MetricsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "No valid bundle (listings go to human review) or the decision log fails"}},
)
async def readyz(engine: EngineDep, store: StoreDep, response: Response) -> dict[str, object]:
    """Ready when a valid bundle serves and the decision log takes writes; 503 names what is wrong.

    While the log is failing, each check (at most one a second) tries a small write, so readiness returns
    as soon as writes succeed again.
    """
    health = store.write_health
    if not health.ok and health.probe_due():
        await run_in_threadpool(store.probe_write)
    causes = [] if engine.ready else ["no valid model bundle: every listing goes to human review"]
    if not health.ok:
        causes.append(f"decision log cannot take writes since {health.since:%Y-%m-%dT%H:%M:%SZ}: {health.cause}")
    if causes:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {
        "ready": not causes,
        "model_version": engine.model_version,
        "policy_version": engine.policy.version,
        "decision_log_writable": health.ok,
        "causes": causes,
        "worker_pid": os.getpid(),  # which worker answered, when several serve one port
    }


@router.get("/metrics", response_class=Response)
async def metrics(engine: EngineDep, registry: MetricsDep) -> Response:
    """Prometheus text format."""
    registry.model_ready.set(1 if engine.ready else 0)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
