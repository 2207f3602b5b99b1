"""Product identification kept current: verdicts reach the serving bundle's index as they arrive.

A verdict recorded through this worker is added at once (`remember_verdict`); every worker also polls
the decision log (`sync_verdicts`, from `follow_verdicts`) for verdicts reviewed since it last looked,
so a verdict recorded by another worker, or before a restart, is matched too. The index dedupes by
listing id, so reading a verdict twice changes nothing. A failure here never stops a verdict or a
decision: it is logged, and the next poll catches up.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from serving.engine import DecisionEngine
from serving.store import Store

log = logging.getLogger(__name__)

# Verdicts of other workers can commit slightly out of review-time order: each poll re-reads this far back.
POLL_OVERLAP = timedelta(seconds=30)
POLL_BATCH = 10_000


def _microseconds(at: datetime) -> int:
    return int(np.datetime64(at.replace(tzinfo=None), "us").astype(np.int64))


def remember_verdict(engine: DecisionEngine, listing: dict[str, Any], verdict: str, reason: str, at: datetime) -> None:
    """Add one verdict to the serving bundle's product index (no-op without one); never raises."""
    identifier = engine.bundle.identifier if engine.bundle is not None else None
    if identifier is None:
        return
    try:
        identifier.add_verdicts([listing], engine.id_column, [verdict], [reason], [_microseconds(at)])
    except Exception:
        log.exception("verdict on listing %s not added to the product index; the next poll will", listing)


def sync_verdicts(engine: DecisionEngine, store: Store) -> int:
    """Add the verdicts reviewed since the index last synced (all of them the first time); returns how
    many rejects were new."""
    identifier = engine.bundle.identifier if engine.bundle is not None else None
    if identifier is None:
        return 0
    added = 0
    since = identifier.synced_until - POLL_OVERLAP if identifier.synced_until is not None else None
    while True:
        rows = store.reviewed_listings_after(since, POLL_BATCH)
        if rows:
            added += identifier.add_verdicts(
                [r.listing for r in rows],
                engine.id_column,
                [r.verdict for r in rows],
                [r.violation_reason for r in rows],
                [_microseconds(r.reviewed_at) for r in rows],
            )
            identifier.synced_until = rows[-1].reviewed_at
        if len(rows) < POLL_BATCH or rows[-1].reviewed_at == since:  # caught up, or one instant fills a batch
            return added
        since = rows[-1].reviewed_at


async def sync_now(app: FastAPI) -> None:
    """`sync_verdicts` for the serving engine; a failure is logged (the next poll retries)."""
    try:
        added = await run_in_threadpool(sync_verdicts, app.state.engine, app.state.store)
        if added:
            log.info("product index: %d rejected listings added from the decision log", added)
    except Exception:
        log.exception("product index sync failed; retrying at the next poll")


async def follow_verdicts(app: FastAPI, every_seconds: float) -> None:
    """Sync the serving engine's product index with the decision log every `every_seconds`."""
    while True:
        await asyncio.sleep(every_seconds)
        await sync_now(app)
