"""Human review queue: claim items with a lease (overdue audits first, then by priority), record verdicts.

Three lanes: 'review' holds decisions waiting for a person; 'audit' holds automated decisions in force
drawn for audit; 'second' holds verdicts drawn for a blind second review. A verdict on an audit that
contradicts the decision in force is recorded as an overturn, with its statement of reasons (a takedown,
or the lifting of a block). Gold items and second reviews are recorded apart (`review_quality`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from starlette.concurrency import run_in_threadpool

from serving.api.deps import EngineDep, MetricsDep, QueueWatchKey, ReviewKey, ReviewTextsDep, SettingsDep, StoreDep
from serving.api.errors import field_error
from serving.api.review_quality import blind_verdict
from serving.api.schemas import (
    QueueCounts,
    QueuedItem,
    QueueResponse,
    QueueStats,
    ReviewRequest,
    ReviewResponse,
    scored_item,
)
from serving.engine import verdict_statement
from serving.product_index import remember_verdict
from serving.reviewer_quality import claim_with_gold
from serving.store import ConflictError, NotFoundError, QueueItem
from serving.store.records import LANES, Lane

router = APIRouter(prefix="/v1", tags=["review queue"])


def queued_item(item: QueueItem) -> QueuedItem:
    return QueuedItem(
        decision_id=item.decision_id,
        priority=item.priority,
        qa_sample=item.qa_sample,
        lane=item.lane,
        enqueued_at=item.enqueued_at,
        lease_expires_at=item.lease_expires_at,
        claimed_by=item.claimed_by,
        listing=item.decision.listing,
        decision=scored_item(item.decision),  # type: ignore[arg-type]
    )


@router.get("/queue/next", response_model=QueueResponse)
async def claim_next(
    key: ReviewKey,
    store: StoreDep,
    settings: SettingsDep,
    engine: EngineDep,
    n: Annotated[int, Query(ge=1, le=100)] = 1,
) -> QueueResponse:
    """Lease up to n items to this key's reviewer for `lease_seconds`: audits older than the policy's
    `audit.max_age_hours` first (oldest first), then the highest priority. With the policy's
    `quality.gold_rate`, an item is a gold item (a known answer) instead, presented like any other.

    An item is never leased to two reviewers at once; an expired lease returns it to the queue. A blind
    second review is never handed to the reviewer of the first verdict.
    """
    items = await run_in_threadpool(claim_with_gold, store, key.name, n, settings.lease_seconds, engine.policy)
    return QueueResponse(items=[queued_item(item) for item in items])


@router.get("/queue/stats", response_model=QueueStats)
async def queue_stats(_key: QueueWatchKey, store: StoreDep) -> QueueStats:
    """Queue items by status, in all and per lane, with the age of the oldest item waiting per lane."""

    def counts() -> QueueStats:
        lanes: dict[Lane, QueueCounts] = {
            lane: QueueCounts(
                **store.queue_counts(lane), oldest_pending_age_seconds=store.oldest_pending_age_seconds(lane)
            )
            for lane in LANES
        }
        oldest = [c.oldest_pending_age_seconds for c in lanes.values() if c.oldest_pending_age_seconds is not None]
        return QueueStats(**store.queue_counts(), oldest_pending_age_seconds=max(oldest, default=None), lanes=lanes)

    return await run_in_threadpool(counts)


@router.post(
    "/reviews/{decision_id}",
    response_model=ReviewResponse,
    responses={
        404: {"description": "Unknown decision"},
        409: {"description": "Not queued, already reviewed, or leased to someone else"},
    },
)
async def record_review(
    decision_id: Annotated[str, Path(min_length=1, max_length=64)],
    body: ReviewRequest,
    key: ReviewKey,
    store: StoreDep,
    metrics: MetricsDep,
    engine: EngineDep,
    texts: ReviewTextsDep,
) -> ReviewResponse:
    """Record a verdict. A rejection needs a `violation_reason` (one the serving bundle's data config or
    the policy excerpts know, or 'other') and stores a DSA statement of reasons (automated_decision=false)
    that gives it; on an audit, `overturn` says whether the verdict contradicts the automated decision in
    force (an approved auto-block stores the statement that the block is lifted). `note` is kept with the
    verdict. A first verdict on a review-lane item is drawn for a blind second review with the policy's
    `quality.second_review_rate`; a verdict on a gold item or a second review is recorded apart and
    changes nothing else."""
    problem = texts.rejection_problem(engine.config, body.verdict, body.violation_reason)
    if problem is not None:
        raise field_error(("body", "violation_reason"), problem)
    try:
        blind = await run_in_threadpool(blind_verdict, store, decision_id, key.name, body)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    if blind is not None:
        return blind
    record = await run_in_threadpool(store.get_decision, decision_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown decision {decision_id}")
    statement = verdict_statement(record, body.verdict, body.violation_reason)
    try:
        review = await run_in_threadpool(
            store.record_review,
            decision_id,
            key.name,
            body.verdict,
            body.violation_reason,
            body.review_seconds,
            statement,
            body.note,
            engine.policy.quality.second_review_rate,
        )
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    if review.overturn:
        metrics.observe_overturn(record.decision)
    # product identification: a rejected listing's re-posts match from the next decision on
    await run_in_threadpool(
        remember_verdict, engine, record.listing, review.verdict, review.violation_reason or "", review.reviewed_at
    )
    return ReviewResponse.model_validate(review, from_attributes=True)
