"""Scoring a request: engine under a time budget, fail-safe fallbacks, decision log before the answer."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.concurrency import run_in_threadpool

from serving.engine import (
    MODEL_UNAVAILABLE,
    SCORING_ERROR,
    SCORING_TIMEOUT,
    SMALL_BATCH,
    DecisionEngine,
    Scores,
    fallback_scores,
)
from serving.metrics import Metrics
from serving.store import DecisionRecord, Store
from serving.store.records import utcnow

log = logging.getLogger(__name__)


class Scorer:
    """Runs the model on its own threads (so a budget can be enforced) and logs every decision."""

    def __init__(self, store: Store, metrics: Metrics, budget_ms: int, threads: int) -> None:
        self.store = store
        self.metrics = metrics
        self.budget_s = budget_ms / 1000
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="triage-score")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def score(self, engine: DecisionEngine, listings: list[dict[str, Any]]) -> Scores:
        """Risk and reasons; past the budget or on any failure, NaN risk with the fallback reason."""
        if not engine.ready:
            return fallback_scores(len(listings), MODEL_UNAVAILABLE)
        loop = asyncio.get_running_loop()
        try:
            work = loop.run_in_executor(self._executor, engine.score, listings)
            return await asyncio.wait_for(work, self.budget_s)
        except TimeoutError:  # the thread finishes in the background; its result is dropped
            log.warning("scoring %d listings exceeded %.0f ms", len(listings), self.budget_s * 1000)
            return fallback_scores(len(listings), SCORING_TIMEOUT)
        except Exception:
            log.exception("scoring %d listings failed", len(listings))
            return fallback_scores(len(listings), SCORING_ERROR)

    async def decide_and_log(
        self, engine: DecisionEngine, listings: list[dict[str, Any]], request_id: str | None
    ) -> list[DecisionRecord]:
        """Decisions for the listings, durably logged; a retried request_id returns the stored ones."""
        received_at = utcnow()
        scores = await self.score(engine, listings)
        if len(listings) <= SMALL_BATCH:
            records = engine.decide_safely(listings, scores, request_id, received_at)
        else:
            records = await run_in_threadpool(engine.decide_safely, listings, scores, request_id, received_at)
        stored = await run_in_threadpool(self.store.record_decisions, records)
        fresh_ids = {r.decision_id for r in records}
        self.metrics.observe_decisions([r for r in stored if r.decision_id in fresh_ids])
        return stored
