"""Decision audit (compliance, `audit` scope): why one decision was made, by which model and policy, and
what people did with it; or every decision of one listing in time order. The /audit page reads these.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status
from starlette.concurrency import run_in_threadpool

from serving.api.deps import AuditKey, StoreDep
from serving.api.pages import page_router
from serving.api.schemas import DecisionAudit, ListingHistory
from serving.audit_trail import audit_document, with_bundle_policy

api = APIRouter(prefix="/v1", tags=["decision audit"])


@api.get("/decisions/{decision_id}", response_model=DecisionAudit, responses={404: {"description": "Unknown"}})
async def get_decision_audit(
    decision_id: Annotated[str, Path(min_length=1, max_length=64)], _key: AuditKey, store: StoreDep, request: Request
) -> DecisionAudit:
    """Everything the log holds about one decision, `why` in plain words first (see the schema)."""
    trail = await run_in_threadpool(store.decision_trail, decision_id)
    if trail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown decision {decision_id}")
    trail = with_bundle_policy(trail, request.app.state.settings.models_root)
    return DecisionAudit.model_validate(audit_document(trail))


@api.get(
    "/listings/{listing_id:path}/history",
    response_model=ListingHistory,
    responses={404: {"description": "Never scored"}},
)
async def get_listing_history(
    listing_id: Annotated[str, Path(min_length=1, max_length=256)], _key: AuditKey, store: StoreDep, request: Request
) -> ListingHistory:
    """Every decision of one listing in the order received, each as `GET /v1/decisions/{id}` returns it."""
    trails, truncated = await run_in_threadpool(store.listing_trails, listing_id)
    models_root = request.app.state.settings.models_root
    if not trails:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"listing {listing_id} has no decisions")
    return ListingHistory(
        listing_id=listing_id,
        decisions=[
            DecisionAudit.model_validate(audit_document(with_bundle_policy(trail, models_root))) for trail in trails
        ],
        truncated=truncated,
    )


page = page_router("audit", "audit")

router = APIRouter()
router.include_router(api)
router.include_router(page)
