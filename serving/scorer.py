"""Scoring a request: engine under a time budget, fail-safe fallbacks, decision log before the answer.

Single listings are micro-batched: requests that arrive while a batch is being scored wait for the
next one, which scores them all in one engine call and logs them in one write. Nothing waits on a
timer, so a lone request is scored at once, and batches grow with load (up to `max_batch` listings).
Each request still gets its own decision, request_id and received_at, and is answered only after its
decision is committed.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from serving.engine import (
    MODEL_UNAVAILABLE,
    SCORING_ERROR,
    SCORING_TIMEOUT,
    DecisionEngine,
    fallback_scores,
)
from serving.metrics import Metrics
from serving.store import DecisionRecord, Store
from serving.store.health import is_storage_error
from serving.store.records import utcnow

log = logging.getLogger(__name__)

MICRO_BATCH = 64  # most single listings scored together


@dataclass(eq=False)
class _Waiting:
    """A single-listing request waiting for its micro-batch."""

    engine: DecisionEngine
    listing: dict[str, Any]
    request_id: str | None
    key_id: str = ""
    request_hash: str | None = None
    received_at: datetime = field(default_factory=utcnow)
    future: asyncio.Future[DecisionRecord] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Scorer:
    """Runs the model on its own threads (so a budget can be enforced) and logs every decision."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        budget_ms: int,
        threads: int,
        max_batch: int = MICRO_BATCH,
        item_budget_ms: float = 0.0,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.budget_s = budget_ms / 1000
        self.item_budget_s = item_budget_ms / 1000
        self.max_batch = max_batch
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="triage-score")
        self._waiting: list[_Waiting] = []
        self._draining = False
        self._logging: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- one request ------------------------------------------------------------------------------

    async def decide_and_log(
        self,
        engine: DecisionEngine,
        listings: list[dict[str, Any]],
        request_id: str | None,
        key_id: str = "",
        request_hash: str | None = None,
    ) -> list[DecisionRecord]:
        """Decisions for the listings, durably logged; a retried request_id (of the same key) returns the
        stored ones, each with the `request_hash` it was first logged with."""
        received_at = utcnow()
        records = await self._score_and_decide(engine, listings, request_id, received_at)
        for record in records:
            record.key_id, record.request_hash = key_id, request_hash
        return await self._log(records)

    async def decide_one(
        self,
        engine: DecisionEngine,
        listing: dict[str, Any],
        request_id: str | None,
        key_id: str = "",
        request_hash: str | None = None,
    ) -> DecisionRecord:
        """`decide_and_log` for one listing, scored and logged together with concurrent ones."""
        waiting = _Waiting(engine, listing, request_id, key_id, request_hash)
        self._waiting.append(waiting)
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await waiting.future

    # -- micro-batching ---------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Score what is waiting, batch after batch, until nothing is; logging overlaps the next batch."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                for group in _by_engine(batch):
                    await self._decide_group(group)
                await asyncio.sleep(0)  # let requests parsed meanwhile join the next batch
        except BaseException as exc:  # never leave a request waiting forever
            for waiting in self._waiting:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            self._waiting = []
            raise
        finally:
            self._draining = False

    async def _decide_group(self, group: list[_Waiting]) -> None:
        try:
            records = await self._score_and_decide(
                group[0].engine,
                [w.listing for w in group],
                [w.request_id for w in group],
                [w.received_at for w in group],
            )
        except Exception as exc:
            for waiting in group:
                waiting.future.set_exception(exc)
            return
        for waiting, record in zip(group, records, strict=True):
            record.key_id, record.request_hash = waiting.key_id, waiting.request_hash
        task = asyncio.get_running_loop().create_task(self._log_group(group, records))
        self._logging.add(task)  # keep a reference until it is done
        task.add_done_callback(self._logging.discard)

    async def _log_group(self, group: list[_Waiting], records: list[DecisionRecord]) -> None:
        try:
            stored = await self._log(records)
        except Exception as exc:
            if is_storage_error(exc):  # the log itself is failing: every request of the group fails (503)
                for waiting in group:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                return
            # one bad request must not fail the others: log each on its own
            for waiting, record in zip(group, records, strict=True):
                await self._log_alone(waiting, record)
            return
        for waiting, record in zip(group, stored, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(record)

    async def _log_alone(self, waiting: _Waiting, record: DecisionRecord) -> None:
        try:
            (stored,) = await self._log([record])
        except Exception as exc:
            if not waiting.future.done():
                waiting.future.set_exception(exc)
            return
        if not waiting.future.done():
            waiting.future.set_result(stored)

    # -- shared steps -----------------------------------------------------------------------------

    async def _score_and_decide(
        self,
        engine: DecisionEngine,
        listings: list[dict[str, Any]],
        request_id: str | list[str | None] | None,
        received_at: datetime | list[datetime],
    ) -> list[DecisionRecord]:
        """Score and decide on a scoring thread within the budget; past it or on failure, fail safe."""
        if not engine.ready:
            return engine.decide_safely(
                listings, fallback_scores(len(listings), MODEL_UNAVAILABLE), request_id, received_at
            )
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._executor, _score_and_decide, engine, listings, request_id, received_at)
        budget_s = self.budget_s + self.item_budget_s * len(listings)
        try:
            return await asyncio.wait_for(work, budget_s)
        except TimeoutError:  # the thread finishes in the background; its result is dropped
            log.warning("scoring %d listings exceeded %.0f ms", len(listings), budget_s * 1000)
            scores = fallback_scores(len(listings), SCORING_TIMEOUT)
        except Exception:
            log.exception("scoring %d listings failed", len(listings))
            scores = fallback_scores(len(listings), SCORING_ERROR)
        return engine.decide_safely(listings, scores, request_id, received_at)

    async def _log(self, records: list[DecisionRecord]) -> list[DecisionRecord]:
        """Durably log the records; returns them as stored (the first decision of a retried request)."""
        if not records:
            return []
        committed = self.store.submit_decisions(records)  # group commit: await it, no thread parked
        if committed is not None:
            stored = await asyncio.wrap_future(committed)
        else:
            stored = await run_in_threadpool(self.store.record_decisions, records)
        fresh_ids = {r.decision_id for r in records}
        self.metrics.observe_decisions([r for r in stored if r.decision_id in fresh_ids])
        return stored


def _score_and_decide(
    engine: DecisionEngine,
    listings: list[dict[str, Any]],
    request_id: str | list[str | None] | None,
    received_at: datetime | list[datetime],
) -> list[DecisionRecord]:
    """On a scoring thread: the engine never raises from `score`, `decide_safely` never raises."""
    return engine.decide_safely(listings, engine.score(listings), request_id, received_at)


def _by_engine(batch: list[_Waiting]) -> list[list[_Waiting]]:
    """Requests grouped by the engine they arrived under (a policy swap can split a batch), in order."""
    groups: dict[int, list[_Waiting]] = {}
    for waiting in batch:
        groups.setdefault(id(waiting.engine), []).append(waiting)
    return list(groups.values())
