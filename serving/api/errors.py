"""Error responses: 422s that name the field (and never echo non-JSON input), 503s when the decision log
cannot take writes (with Retry-After), JSON 500s."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from serving.store.health import STORAGE_ERRORS, describe

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a 503 asks clients to wait: long enough for a probe or an operator to free space


def field_error(loc: Sequence[str | int], msg: str, kind: str = "value_error") -> RequestValidationError:
    """A 422 like pydantic's, for checks that need runtime settings (batch size, known segments)."""
    return RequestValidationError([{"loc": tuple(loc), "msg": msg, "type": kind}])


def _field(loc: Sequence[Any]) -> str:
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    return ".".join(str(p) for p in parts) or str(loc[0] if loc else "")


def validation_detail(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The `detail` of a 422: each error's field, location, message and type. The input is left out on
    purpose: it may hold NaN/Infinity, which JSON cannot carry (-> a 500)."""
    return [
        {
            "field": _field(e.get("loc", ())),
            "loc": [str(p) if not isinstance(p, int) else p for p in e["loc"]],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "value_error")),
        }
        for e in errors
    ]


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The decision log failed (disk full, I/O, database down): nothing was acknowledged, nothing auto-passed.

    A decision is logged before it is answered, so a request whose write failed has no decision to return;
    the client retries (a retry with the same request_id is idempotent).
    """
    cause = describe(exc)
    store = getattr(request.app.state, "store", None)
    if store is not None:
        store.write_health.failed(exc)  # also for a failed read: not ready until a write commits again
    log.error("decision log unavailable on %s %s: %s", request.method, request.url.path, cause)
    return JSONResponse(
        {
            "detail": "the decision log is unavailable, so nothing was decided or recorded; retry later",
            "cause": cause,
            "retry_after_seconds": RETRY_AFTER_S,
        },
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    for storage_error in STORAGE_ERRORS:
        app.add_exception_handler(storage_error, store_unavailable)
    app.add_exception_handler(Exception, unexpected_error)
