"""The FastAPI app: `create_app(settings)` wires settings, store, model, routers and middleware.

The lifespan opens the decision log and loads the bundle onto `app.state`; without a valid bundle the
app still starts, NOT ready: every listing goes to human review until an admin reloads a good bundle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from serving.api import body, docs, errors, health, keys, me, models, policy, queue, score, simulate
from serving.api.deps import authenticate_before_body
from serving.lifecycle import finish_shadow, follow_store, in_force_path, startup_shadow
from serving.logs import configure_logging
from serving.metrics import Metrics
from serving.middleware import AccessMiddleware, AuthenticateFirstMiddleware, BodyLimitMiddleware
from serving.models import startup_engine
from serving.scorer import Scorer
from serving.settings import Settings, get_settings
from serving.store import create_store

log = logging.getLogger(__name__)

# Every router the service serves; a new one (e.g. serving/api/simulate.py) is one more entry.
ROUTERS: list[APIRouter] = [
    score.router,
    queue.router,
    policy.router,
    models.router,
    keys.router,
    health.router,
    simulate.router,
    me.router,
    docs.router,
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    store = create_store(
        settings.database_url, group_commit=settings.group_commit, group_commit_ms=settings.group_commit_ms
    )
    await run_in_threadpool(store.init_schema)
    app.state.store = store
    bundle = await run_in_threadpool(in_force_path, store, settings)  # the model in force, else the configured
    app.state.engine = await run_in_threadpool(startup_engine, bundle, settings.reasons, store, settings.signing_key)
    app.state.shadow = await run_in_threadpool(startup_shadow, settings, store)
    app.state.scorer = Scorer(
        store,
        app.state.metrics,
        settings.request_timeout_ms,
        settings.scoring_threads,
        item_budget_ms=settings.item_budget_ms,
    )
    app.state.admin_lock = asyncio.Lock()
    follower = asyncio.get_running_loop().create_task(follow_store(app, settings.follow_seconds))
    try:
        yield
    finally:
        follower.cancel()
        await finish_shadow(app)
        app.state.scorer.close()
        await run_in_threadpool(store.close)
        log.info("decision log closed")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not logging.getLogger().handlers:  # under pytest or an embedding app, leave logging as configured
        configure_logging(settings.log_level)
    app = FastAPI(
        title="Listing triage",
        summary="Routes marketplace listings to auto-pass, auto-block or human review.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # served by serving/api/docs.py from local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    body.install(app, score.current_bodies)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthenticateFirstMiddleware, check=authenticate_before_body(ROUTERS))  # before any body is read
    app.add_middleware(AccessMiddleware, metrics=app.state.metrics)  # outermost: sees every response
    return app
