"""Scoring: one listing, or a batch scored in one engine call. The decision is logged before the answer.

Both routes read their JSON body with `body.parse` (validated straight from the bytes): for a batch that
halves the cost of turning a request into listings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from pydantic import BaseModel

from features.config import DataConfig
from serving.api import body
from serving.api.deps import KEY_SECURITY, keyed, request_key
from serving.api.errors import field_error
from serving.api.schemas import (
    BatchResponse,
    RequestBodies,
    ScoredItem,
    request_bodies,
    scored_item,
    unknown_category_warnings,
)
from serving.engine import DecisionEngine
from serving.metrics import Metrics
from serving.scorer import Scorer
from serving.settings import Settings
from serving.shadow import ShadowScorer
from serving.store import ConflictError, DecisionRecord

router = APIRouter(prefix="/v1/score", tags=["scoring"])

# The built-in marketplace contract: the bodies served without a bundle. Every config's bodies have the
# same names (Listing, ScoreRequest, BatchRequest), so the routes' OpenAPI references hold for all.
_BUILT_IN_CONFIG = DataConfig()
_BUILT_IN = request_bodies(_BUILT_IN_CONFIG)


def bodies_of(engine: DecisionEngine | None, settings: Settings) -> RequestBodies:
    """The request bodies of the data config the engine serves (its bundle's; without a bundle, the
    deployment's contract, else the built-in config's), with the deployment's batch limit."""
    config = engine.config if engine is not None else None
    return request_bodies(config or _BUILT_IN_CONFIG, settings.max_batch_items)


def current_bodies(app: FastAPI) -> tuple[type[BaseModel], ...]:
    """The bodies declared in the OpenAPI document by `body.install`: those of the engine serving now."""
    bodies = bodies_of(getattr(app.state, "engine", None), app.state.settings)
    return (bodies.score, bodies.batch)


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or invalid API key"},
    403: {"description": "Key lacks the score scope"},
    409: {"description": "request_id already used by this key with a different body"},
    413: {"description": "Body too large"},
    422: {"description": "Invalid listing (field named)"},
}


def _json(content: object) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


@router.post(
    "",
    response_model=ScoredItem,
    responses=_ERRORS,
    openapi_extra={**body.openapi_body(_BUILT_IN.score), **KEY_SECURITY},
)
@keyed
async def score_listing(request: Request) -> Response:
    """Route one listing: auto_pass, auto_block or human_review, with risk, reasons and versions."""
    key = await request_key(request, "score")
    state = request.app.state  # the engine in force when the request arrived (swapped whole on a change)
    engine: DecisionEngine = state.engine
    scorer: Scorer = state.scorer
    metrics: Metrics = state.metrics
    bodies = bodies_of(engine, state.settings)
    listing = bodies.fields(await body.parse(bodies.score, request))
    request_id = listing.pop("request_id")
    request_hash = await _body_hash(request) if request_id is not None else None
    try:
        record = await scorer.decide_one(engine, listing, request_id, key.key_id, request_hash)
    except ConflictError as exc:
        raise _reused(request_id, str(exc)) from None
    _check_same_request([record], request_id, request_hash)
    shadow_score(request, [listing], [record])
    return _json(_answers(engine, metrics, [listing], [record])[0])


@router.post(
    "/batch",
    response_model=BatchResponse,
    responses=_ERRORS,
    openapi_extra={**body.openapi_body(_BUILT_IN.batch), **KEY_SECURITY},
)
@keyed
async def score_batch(request: Request) -> Response:
    """Route up to `max_batch_items` listings in one model call; items come back in request order."""
    key = await request_key(request, "score")
    state = request.app.state
    engine: DecisionEngine = state.engine
    scorer: Scorer = state.scorer
    settings: Settings = state.settings
    metrics: Metrics = state.metrics
    # built per config (fields by name) and limit: more than max_batch_items is a 422 on "items"
    bodies = bodies_of(engine, settings)
    batch = (await body.parse(bodies.batch, request)).__dict__
    items: list[BaseModel] = batch["items"]
    listings = [bodies.fields(item) for item in items]  # the validated fields (extra="forbid": nothing else)
    request_id: str | None = batch["request_id"]
    if request_id is not None:
        _refuse_repeated_ids(listings, engine.id_column)
    request_hash = await _body_hash(request) if request_id is not None else None
    try:
        records = await scorer.decide_and_log(engine, listings, request_id, key.key_id, request_hash)
    except ConflictError:
        raise _reused(request_id, _BATCH_CHANGED) from None
    _check_same_request(records, request_id, request_hash, batch=True)
    shadow_score(request, listings, records)
    return _json({"items": _answers(engine, metrics, listings, records)})


def _refuse_repeated_ids(listings: list[dict[str, Any]], id_column: str) -> None:
    """A 422 naming the second item of a listing id already in the batch. The decision log keeps one
    decision per (key, listing id, request_id): a repeated id under one request_id would be answered with
    the first item's decision, a decision about another body (an auto-pass for a listing never scored)."""
    first_at: dict[Any, int] = {}
    for i, listing in enumerate(listings):
        listing_id = listing[id_column]
        if listing_id in first_at:
            raise field_error(
                ("body", "items", i, id_column),
                f"{id_column} {listing_id!r} is also item {first_at[listing_id]}: a batch with a request_id "
                "holds each listing once (send the other in its own request)",
                "value_error",
            )
        first_at[listing_id] = i


def shadow_score(request: Request, listings: list[dict[str, Any]], records: list[DecisionRecord]) -> None:
    """Hand the logged champion decisions to the shadow model, if one is set: it scores them later, on
    its own thread, and nothing it does reaches this response (`serving.shadow`)."""
    shadow: ShadowScorer | None = getattr(request.app.state, "shadow", None)
    if shadow is not None:
        shadow.submit(listings, records)


def _answers(
    engine: DecisionEngine, metrics: Metrics, listings: list[dict[str, Any]], records: list[DecisionRecord]
) -> list[dict[str, Any]]:
    """The items to answer, each with a warning for categorical values the model does not know (counted
    in the metrics by column): they are accepted and scored as unknown."""
    unknown = engine.unknown_categories(listings)
    metrics.observe_unknown_categories(unknown)
    return [scored_item(r, unknown_category_warnings(u)) for r, u in zip(records, unknown, strict=True)]


async def _body_hash(request: Request) -> str:
    """What tells a retry (the same body, byte for byte) from a new request reusing its request_id."""
    return hashlib.sha256(await request.body()).hexdigest()


def _check_same_request(
    records: Sequence[DecisionRecord], request_id: str | None, request_hash: str | None, batch: bool = False
) -> None:
    """A 409 when a stored decision came back for this request_id but was asked for with another body
    (decisions logged before bodies were hashed have no hash: taken as retries). A batch's hash is the
    whole body's, so the answer names the batch, not one of its items (which may be unchanged)."""
    for record in records:
        if record.request_hash is not None and record.request_hash != request_hash:
            if batch:
                detail = _BATCH_CHANGED
            else:
                detail = f"listing {record.listing_id!r} was decided under this key with a different body"
            raise _reused(request_id, detail)


# a batch's hash is the whole body's: the stored item the conflict surfaced on may be unchanged
_BATCH_CHANGED = "a batch with a different body was decided under this key (any item may differ)"


def _reused(request_id: str | None, detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        f"request_id {request_id!r} was already used: {detail}. A retry must resend the same body; "
        "a new request needs a new request_id.",
    )
