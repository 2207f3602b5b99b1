"""The FastAPI app: `create_app(settings)` wires settings, store, model, routers and middleware.

The lifespan opens the decision log and loads the bundle onto `app.state`; without a valid bundle the
app still starts, NOT ready: every listing goes to human review until an admin reloads a good bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from bundle.load import Bundle
from decision.policy import Policy
from serving.api import (
    body,
    corrections,
    decisions,
    docs,
    errors,
    health,
    keys,
    listings,
    me,
    models,
    monitor,
    pages,
    policy,
    queue,
    review_console,
    review_quality,
    rule_backtest,
    rule_suggestions,
    rules,
    score,
    simulate,
)
from serving.api.deps import api_routes, authenticate_before_body
from serving.lifecycle import finish_shadow, follow_store, in_force_path, startup_shadow
from serving.logs import configure_logging
from serving.merchant_history import apply_outcome, engine_updates, refresh
from serving.metrics import Metrics
from serving.middleware import AccessMiddleware, AuthenticateFirstMiddleware, BodyLimitMiddleware, RefuseNulMiddleware
from serving.models import startup_engine, thaw_after_shutdown
from serving.monitor import GaugeRefresher
from serving.product_index import follow_verdicts, sync_now
from serving.reasons import ReviewTexts
from serving.scorer import Scorer
from serving.settings import Settings, get_settings
from serving.store import Store, create_store

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
    monitor.router,
    rules.router,
    listings.router,
    me.router,
    docs.router,
    rule_backtest.router,
    rule_suggestions.router,
    review_console.router,
    corrections.router,
    decisions.router,
    review_quality.router,
    pages.index,
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # the reviewer's words and policy excerpts: a broken file stops the start, naming the file and entry
    app.state.review_texts = await run_in_threadpool(
        ReviewTexts.load, settings.reason_catalogue, settings.policy_excerpts
    )
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
    store.merchant_listener = lambda outcome: apply_outcome(app.state.engine, outcome)
    merchant_refresh = asyncio.create_task(_refresh_merchant_history(app, settings.merchant_refresh_seconds))
    refresher = _start_monitor(app, settings, store)
    follower = asyncio.get_running_loop().create_task(follow_store(app, settings.follow_seconds))
    await sync_now(app)  # verdicts recorded before this start (or by other workers) match from the first listing
    verdicts = asyncio.create_task(follow_verdicts(app, settings.follow_seconds))
    try:
        yield
    finally:
        verdicts.cancel()
        follower.cancel()
        await finish_shadow(app)
        merchant_refresh.cancel()
        store.merchant_listener = None
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        app.state.scorer.close()
        await run_in_threadpool(store.close)
        log.info("decision log closed")
        thaw_after_shutdown()


async def _refresh_merchant_history(app: FastAPI, every_seconds: float) -> None:
    """Bring other workers' verdicts into the serving engine's merchant history, every `every_seconds`."""
    while True:
        await asyncio.sleep(every_seconds)
        updates = engine_updates(app.state.engine)
        if updates is None:
            continue
        try:
            await run_in_threadpool(refresh, updates, app.state.store)
        except Exception:
            log.exception("merchant history refresh failed; serving what it held, retrying in %.0f s", every_seconds)


def _start_monitor(app: FastAPI, settings: Settings, store: Store) -> asyncio.Task[None] | None:
    """The background refresh of the monitor gauges (None when turned off)."""
    if not settings.monitor_refresh_seconds:
        return None

    def current() -> tuple[Bundle | None, Policy | None]:
        engine = app.state.engine
        return engine.bundle, engine.policy if engine.bundle is not None else None

    refresher = GaugeRefresher(
        store,
        current,
        app.state.metrics,
        settings.monitor_refresh_seconds,
        timedelta(hours=settings.monitor_window_hours),
        lock=app.state.admin_lock,
    )
    return asyncio.create_task(refresher.run(), name="monitor-gauges")


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
    app.add_middleware(RefuseNulMiddleware, routes=list(api_routes(ROUTERS)))  # PostgreSQL text holds no NUL
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthenticateFirstMiddleware, check=authenticate_before_body(ROUTERS))  # before any body is read
    app.add_middleware(AccessMiddleware, metrics=app.state.metrics)  # outermost: sees every response
    return app
