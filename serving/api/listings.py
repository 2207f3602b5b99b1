"""Similar past cases: for a listing, the most similar reviewed listings with their verdicts and reasons.

Past cases are the bundle's training listings and the verdicts the decision log adds (product
identification's index, `features.identify`); a listing is found by id among them, else as last scored.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from serving.api.deps import EngineDep, MonitorKey, StoreDep

router = APIRouter(prefix="/v1", tags=["listings"])


class SimilarCase(BaseModel):
    listing_id: str
    verdict: str = Field(description="'reject' or 'approve'")
    violation_reason: str = Field(description="the reviewer's reason for a reject ('' for an approval)")
    similarity: float = Field(ge=0.0, le=1.0, description="estimated Jaccard similarity of the listings' text")


class SimilarCases(BaseModel):
    listing_id: str
    cases: list[SimilarCase]


@router.get(
    "/listings/{listing_id:path}/similar",
    response_model=SimilarCases,
    responses={404: {"description": "Unknown listing"}, 503: {"description": "The bundle ships no product index"}},
)
async def similar_cases(
    listing_id: Annotated[str, Path(min_length=1, max_length=256)],
    _key: MonitorKey,
    engine: EngineDep,
    store: StoreDep,
    k: Annotated[int, Query(ge=1, le=50)] = 5,
) -> SimilarCases:
    """The k most similar past reviewed listings (best first), each with its verdict and reason; fewer
    when fewer share enough text to be candidates."""
    identifier = engine.bundle.identifier if engine.bundle is not None else None
    if identifier is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the serving bundle ships no product index")
    indexed = identifier.reviewed.listing(listing_id)
    if indexed is None:
        listing = await run_in_threadpool(store.latest_listing, listing_id)
        if listing is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown listing {listing_id}")
        indexed, _ = identifier.record_listings([listing], engine.id_column)
    cases = await run_in_threadpool(identifier.similar, indexed, k)
    return SimilarCases(listing_id=listing_id, cases=[SimilarCase(**vars(c)) for c in cases])
