"""Human review queue: claim the highest-priority items with a lease, record verdicts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from starlette.concurrency import run_in_threadpool

from serving.api.deps import MonitorKey, ReviewKey, SettingsDep, StoreDep
from serving.api.schemas import QueuedItem, QueueResponse, QueueStats, ReviewRequest, ReviewResponse, scored_item
from serving.engine import review_statement_of_reasons
from serving.store import ConflictError, NotFoundError, QueueItem

router = APIRouter(prefix="/v1", tags=["review queue"])


def _queued(item: QueueItem) -> QueuedItem:
    return QueuedItem(
        decision_id=item.decision_id,
        priority=item.priority,
        qa_sample=item.qa_sample,
        enqueued_at=item.enqueued_at,
        lease_expires_at=item.lease_expires_at,
        claimed_by=item.claimed_by,
        listing=item.decision.listing,
        decision=scored_item(item.decision),  # type: ignore[arg-type]
    )


@router.get("/queue/next", response_model=QueueResponse)
async def claim_next(
    key: ReviewKey, store: StoreDep, settings: SettingsDep, n: Annotated[int, Query(ge=1, le=100)] = 1
) -> QueueResponse:
    """Lease up to n items, highest priority first, to this key's reviewer for `lease_seconds`.

    An item is never leased to two reviewers at once; an expired lease returns it to the queue.
    """
    items = await run_in_threadpool(store.claim, key.name, n, settings.lease_seconds)
    return QueueResponse(items=[_queued(item) for item in items])


@router.get("/queue/stats", response_model=QueueStats)
async def queue_stats(_key: MonitorKey, store: StoreDep) -> QueueStats:
    """Queue items by status."""
    return QueueStats(**await run_in_threadpool(store.queue_counts))


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
) -> ReviewResponse:
    """Record a verdict. A rejection stores a DSA statement of reasons (automated_decision=false)."""
    record = await run_in_threadpool(store.get_decision, decision_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown decision {decision_id}")
    statement = review_statement_of_reasons(record, body.violation_reason) if body.verdict == "reject" else None
    try:
        review = await run_in_threadpool(
            store.record_review,
            decision_id,
            key.name,
            body.verdict,
            body.violation_reason,
            body.review_seconds,
            statement,
        )
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ReviewResponse.model_validate(review, from_attributes=True)
