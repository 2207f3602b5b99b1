"""Scoring: one listing, or a batch scored in one engine call. The decision is logged before the answer.

Both routes read their JSON body with `body.parse` (validated straight from the bytes): for a batch that
halves the cost of turning a request into listings.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from serving.api import body
from serving.api.deps import EngineDep, ScoreKey, ScorerDep, SettingsDep
from serving.api.errors import field_error
from serving.api.schemas import BatchRequest, BatchResponse, ScoredItem, ScoreRequest, scored_item

router = APIRouter(prefix="/v1/score", tags=["scoring"])

BODIES = (ScoreRequest, BatchRequest)  # declared in the OpenAPI document by `body.install`

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or invalid API key"},
    403: {"description": "Key lacks the score scope"},
    413: {"description": "Body too large"},
    422: {"description": "Invalid listing (field named)"},
}


def _json(content: object) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


@router.post("", response_model=ScoredItem, responses=_ERRORS, openapi_extra=body.openapi_body(ScoreRequest))
async def score_listing(request: Request, _key: ScoreKey, engine: EngineDep, scorer: ScorerDep) -> Response:
    """Route one listing: auto_pass, auto_block or human_review, with risk, reasons and versions."""
    parsed = await body.parse(ScoreRequest, request)
    listing = dict(parsed.__dict__)  # the validated fields, without a model_dump walk
    request_id = listing.pop("request_id")
    record = await scorer.decide_one(engine, listing, request_id)
    return _json(scored_item(record))


@router.post("/batch", response_model=BatchResponse, responses=_ERRORS, openapi_extra=body.openapi_body(BatchRequest))
async def score_batch(
    request: Request, _key: ScoreKey, engine: EngineDep, scorer: ScorerDep, settings: SettingsDep
) -> Response:
    """Route up to `max_batch_items` listings in one model call; items come back in request order."""
    batch = await body.parse(BatchRequest, request)
    if len(batch.items) > settings.max_batch_items:
        raise field_error(
            ("body", "items"),
            f"a batch holds at most {settings.max_batch_items} items, got {len(batch.items)}",
            "too_long",
        )
    listings = [item.__dict__ for item in batch.items]  # the validated fields (extra="forbid": nothing else)
    records = await scorer.decide_and_log(engine, listings, batch.request_id)
    return _json({"items": [scored_item(r) for r in records]})
