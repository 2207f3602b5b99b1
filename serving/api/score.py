"""Scoring: one listing, or a batch scored in one engine call. The decision is logged before the answer."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Response

from serving.api.deps import EngineDep, ScoreKey, ScorerDep, SettingsDep
from serving.api.errors import field_error
from serving.api.schemas import BatchRequest, BatchResponse, ScoredItem, ScoreRequest, scored_item

router = APIRouter(prefix="/v1/score", tags=["scoring"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or invalid API key"},
    403: {"description": "Key lacks the score scope"},
    413: {"description": "Body too large"},
    422: {"description": "Invalid listing (field named)"},
}


def _json(content: object) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


@router.post("", response_model=ScoredItem, responses=_ERRORS)
async def score_listing(body: ScoreRequest, _key: ScoreKey, engine: EngineDep, scorer: ScorerDep) -> Response:
    """Route one listing: auto_pass, auto_block or human_review, with risk, reasons and versions."""
    listing = body.model_dump(exclude={"request_id"})
    record = await scorer.decide_one(engine, listing, body.request_id)
    return _json(scored_item(record))


@router.post("/batch", response_model=BatchResponse, responses=_ERRORS)
async def score_batch(
    body: BatchRequest, _key: ScoreKey, engine: EngineDep, scorer: ScorerDep, settings: SettingsDep
) -> Response:
    """Route up to `max_batch_items` listings in one model call; items come back in request order."""
    if len(body.items) > settings.max_batch_items:
        raise field_error(
            ("body", "items"),
            f"a batch holds at most {settings.max_batch_items} items, got {len(body.items)}",
            "too_long",
        )
    listings = [item.model_dump() for item in body.items]
    records = await scorer.decide_and_log(engine, listings, body.request_id)
    return _json({"items": [scored_item(r) for r in records]})
