"""The review console: `/review` (the page) and the calls it makes.

`GET /v1/review/next` claims one item like `GET /v1/queue/next` (same order, same lease) and returns it
with everything a reviewer reads to judge it (`serving.review_context`); `skip` gives back items this
reviewer passes over without handing them straight back. `GET /v1/review/items/{decision_id}` shows an
item this reviewer holds again (a page reload); `POST /v1/queue/{decision_id}/release` gives a lease back
(the page does it when the reviewer leaves). Verdicts go to `POST /v1/reviews/{decision_id}`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from serving.api.deps import EngineDep, ReviewKey, ReviewTextsDep, SettingsDep, StoreDep
from serving.api.pages import page_router
from serving.api.queue import queued_item
from serving.api.schemas import QueuedItem
from serving.engine import DecisionEngine
from serving.reasons import ReviewTexts
from serving.review_context import ReviewContext, review_context
from serving.reviewer_quality import claim_with_gold, held_item, release_item
from serving.store import ConflictError, NotFoundError, QueueItem, Store

api = APIRouter(prefix="/v1", tags=["review console"])
DecisionId = Annotated[str, Path(min_length=1, max_length=64)]
MAX_SKIPPED = 50


class ReviewItem(BaseModel):
    """A claimed item and what a reviewer needs to judge it; `item` null: nothing to review now."""

    item: QueuedItem | None
    context: ReviewContext | None = None


class Released(BaseModel):
    decision_id: str
    status: str = Field(description="'pending': back in the queue for whoever claims next")


def _shown(item: QueueItem, engine: DecisionEngine, texts: ReviewTexts) -> ReviewItem:
    return ReviewItem(item=queued_item(item), context=review_context(item, engine, texts))


def _release_skipped(store: Store, skipped: list[str], reviewer: str) -> None:
    """Give back the skipped items this reviewer holds; those it no longer holds are left as they are."""
    for decision_id in dict.fromkeys(skipped):
        try:
            release_item(store, decision_id, reviewer)
        except (ConflictError, NotFoundError):
            continue


@api.get("/review/next", response_model=ReviewItem)
async def review_next(
    key: ReviewKey,
    store: StoreDep,
    settings: SettingsDep,
    engine: EngineDep,
    texts: ReviewTextsDep,
    skip: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Query(
            max_length=MAX_SKIPPED, description="Decision ids this reviewer passes over: released, not handed back now."
        ),
    ] = [],  # noqa: B006 (FastAPI copies a query list default per request)
) -> ReviewItem:
    """Lease the next item to this key's reviewer (the order and lease of GET /v1/queue/next) with its
    review context. The skipped items are released after the claim, so this claim never returns them."""

    def claim() -> ReviewItem:
        items = claim_with_gold(store, key.name, 1, settings.lease_seconds, engine.policy)
        _release_skipped(store, skip, key.name)
        return _shown(items[0], engine, texts) if items else ReviewItem(item=None)

    return await run_in_threadpool(claim)


@api.get(
    "/review/items/{decision_id}",
    response_model=ReviewItem,
    responses={404: {"description": "Not a queued decision"}, 409: {"description": "Reviewed, or not leased to you"}},
)
async def review_item(
    decision_id: DecisionId, key: ReviewKey, store: StoreDep, engine: EngineDep, texts: ReviewTextsDep
) -> ReviewItem:
    """An item this key's reviewer holds (claimed and not yet reviewed), with its review context."""
    item = await run_in_threadpool(held_item, store, decision_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"decision {decision_id} is not in the review queue")
    if item.status == "done":
        raise HTTPException(status.HTTP_409_CONFLICT, f"decision {decision_id} is already reviewed")
    if item.status != "claimed" or item.claimed_by != key.name:
        raise HTTPException(status.HTTP_409_CONFLICT, f"decision {decision_id} is not leased to {key.name}")
    return await run_in_threadpool(_shown, item, engine, texts)


@api.post(
    "/queue/{decision_id}/release",
    response_model=Released,
    responses={404: {"description": "Not a queued decision"}, 409: {"description": "Reviewed, or not leased to you"}},
)
async def release(decision_id: DecisionId, key: ReviewKey, store: StoreDep) -> Released:
    """Give back a lease this key's reviewer holds: the item is pending again, first in line by its priority."""
    try:
        await run_in_threadpool(release_item, store, decision_id, key.name)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return Released(decision_id=decision_id, status="pending")


page = page_router("review", "review")

router = APIRouter()
router.include_router(api)
router.include_router(page)
