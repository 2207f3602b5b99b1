"""Review quality: gold items (supervise), reviewer statistics (supervise or read), and the two blind
review paths of the queue routes.

Claims mix gold items in (`serving.reviewer_quality.claim_with_gold`: each item of a claim is a gold
item with the policy's `quality.gold_rate`), and a verdict on a gold item or on a blind second review
(`blind_verdict`) is recorded apart from reviews: it changes no decision, label, merchant history or
product index, and its answer says nothing of the expected verdict or of the first reviewer's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from serving.api.deps import EngineDep, QualityKey, ReviewTextsDep, StoreDep, SuperviseKey
from serving.api.errors import field_error
from serving.api.pages import page_router
from serving.api.schemas import ReviewRequest, ReviewResponse
from serving.engine import verdict_statement
from serving.reviewer_quality import quality_report
from serving.store import ConflictError, NotFoundError, Store
from serving.store.gold import GoldItem

api = APIRouter(prefix="/v1", tags=["review quality"])

DEFAULT_STATS_DAYS = 30


def blind_verdict(store: Store, item_id: str, reviewer: str, body: ReviewRequest) -> ReviewResponse | None:
    """Record a verdict on a gold item or a blind second review; None for any other item (an ordinary
    verdict). The answer has the shape of an ordinary one and nothing more: a rejection's answer carries
    the statement of reasons a first verdict would have got, though none is stored or sent anywhere (a
    gold item or a second review restricts nothing), so that the answer does not tell these items apart."""
    if store.is_gold_assignment(item_id):
        answer = store.answer_gold(
            item_id, reviewer, body.verdict, body.violation_reason, body.review_seconds, note=body.note
        )
        reviewed_at = answer.reviewed_at
        item = store.get_gold_item(item_id)
        record = item.decision if item is not None else None
    elif store.awaits_second_review(item_id):
        second = store.record_second_review(
            item_id, reviewer, body.verdict, body.violation_reason, body.review_seconds, note=body.note
        )
        reviewed_at = second.reviewed_at
        record = store.get_decision(item_id)
    else:
        return None
    return ReviewResponse(
        decision_id=item_id,
        reviewer=reviewer,
        verdict=body.verdict,
        violation_reason=body.violation_reason,
        review_seconds=body.review_seconds,
        reviewed_at=reviewed_at,
        statement_of_reasons=verdict_statement(record, body.verdict, body.violation_reason) if record else None,
        overturn=None,
        note=body.note,
    )


# --- gold items -----------------------------------------------------------------------------------------


class GoldCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: str = Field(min_length=1, max_length=64, description="A logged decision whose listing to copy.")
    expected_verdict: Literal["approve", "reject"]
    expected_reason: str | None = Field(
        default=None, min_length=1, max_length=256, description="For a rejection: the reason it should get."
    )


class GoldOut(BaseModel):
    gold_id: str
    source_decision_id: str
    expected_verdict: Literal["approve", "reject"]
    expected_reason: str | None
    created_at: datetime
    created_by: str
    retired_at: datetime | None
    assigned: int = Field(description="Times handed to a reviewer.")
    answered: int
    correct: int


def _gold_out(item: GoldItem) -> GoldOut:
    return GoldOut.model_validate(item, from_attributes=True)


@api.post(
    "/gold",
    response_model=GoldOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "Unknown decision"},
        409: {"description": "The decision is already a live gold item"},
        422: {"description": "Invalid field (named)"},
    },
)
async def add_gold(
    body: GoldCreate, key: SuperviseKey, store: StoreDep, engine: EngineDep, texts: ReviewTextsDep
) -> GoldOut:
    """Make a gold item of a logged decision: its listing and decision as reviewers will see them, with the
    verdict (and for a rejection, the reason: one a reviewer can choose) it should get."""
    if body.expected_reason is not None and body.expected_verdict != "reject":
        raise field_error(("body", "expected_reason"), "expected_reason: only a rejection has a reason")
    problem = texts.rejection_problem(engine.config, body.expected_verdict, body.expected_reason)
    if body.expected_reason is not None and problem is not None:
        raise field_error(("body", "expected_reason"), f"expected_reason: {problem}")
    try:
        item = await run_in_threadpool(
            store.add_gold, body.decision_id, body.expected_verdict, body.expected_reason, key.name
        )
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return _gold_out(item)


@api.get("/gold", response_model=list[GoldOut])
async def list_gold(
    _key: SuperviseKey, store: StoreDep, include_retired: Annotated[bool, Query()] = False
) -> list[GoldOut]:
    """Gold items, oldest first, with how often each was handed out, answered, and answered right."""
    return [_gold_out(item) for item in await run_in_threadpool(store.list_gold, include_retired)]


@api.delete("/gold/{gold_id}", response_model=GoldOut, responses={404: {"description": "No such live gold item"}})
async def retire_gold(
    gold_id: Annotated[str, Path(min_length=1, max_length=64)], _key: SuperviseKey, store: StoreDep
) -> GoldOut:
    """Retire a gold item: no longer handed out; its answers are kept."""
    try:
        return _gold_out(await run_in_threadpool(store.retire_gold, gold_id))
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


# --- reviewer statistics --------------------------------------------------------------------------------


@api.get("/reviewers/stats", responses={422: {"description": "Invalid window (field named)"}})
async def reviewer_stats(
    _key: QualityKey,
    store: StoreDep,
    since: Annotated[datetime | None, Query(description="window start (default: until - 30 days)")] = None,
    until: Annotated[datetime | None, Query(description="window end (default: now)")] = None,
    confidence: Annotated[float, Query(ge=0.5, le=0.999)] = 0.95,
) -> dict[str, Any]:
    """Per reviewer and per team, over verdicts in [since, until): verdicts, reject rate, handling time
    (median, p90), verdicts per active hour, agreement on blind second reviews (raw, Cohen's kappa, Gwet's
    AC1, with intervals), accuracy on gold items (Clopper-Pearson) and against second-review outcomes."""
    end = _aware(until, "until") if until else datetime.now(UTC)
    start = _aware(since, "since") if since else end - timedelta(days=DEFAULT_STATS_DAYS)
    if start >= end:
        raise field_error(("query", "since"), "since: must be before until")
    return await run_in_threadpool(quality_report, store, start, end, confidence)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise field_error(("query", name), f"{name}: give a time zone (e.g. 2025-06-01T00:00:00Z)")
    return value.astimezone(UTC)


page = page_router("supervisor", "supervisor")

router = APIRouter()
router.include_router(api)
router.include_router(page)
