"""Typed dependencies: the store, the current engine, settings, and API-key authentication by scope.

`authenticate_before_body` applies the same key check from the headers alone, in a middleware, so an
unauthenticated request is refused before its body is read (FastAPI reads a declared body before it
solves dependencies).

All are `async def`: FastAPI runs a plain `def` dependency on a worker thread, a hop per dependency
per request that cost more than scoring itself. The scoring routes, the hot path, take none at all: solving a
route's seven dependencies (four of them the key's) was about a fifth of a single listing's CPU time in the
event loop; they read the app's state and check their key with `request_key`, registered with `keyed`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request, Security, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import Scope as AsgiScope

from serving.engine import DecisionEngine
from serving.keys import cached_key, verify_key
from serving.metrics import Metrics
from serving.reasons import ReviewTexts
from serving.scorer import Scorer
from serving.settings import Settings
from serving.store import ApiKey, Scope, Store
from serving.store.health import STORAGE_ERRORS

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API key>")


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_engine(request: Request) -> DecisionEngine:
    """The engine in force when the request arrived (swapped whole on policy change or reload)."""
    return request.app.state.engine


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_scorer(request: Request) -> Scorer:
    return request.app.state.scorer


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_review_texts(request: Request) -> ReviewTexts:
    return request.app.state.review_texts


StoreDep = Annotated[Store, Depends(get_store)]
EngineDep = Annotated[DecisionEngine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ScorerDep = Annotated[Scorer, Depends(get_scorer)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ReviewTextsDep = Annotated[ReviewTexts, Depends(get_review_texts)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def _verified_key(store: Store, token: str | None) -> ApiKey:
    if not token:
        raise _unauthorized("an API key is required (Authorization: Bearer <key> or X-API-Key)")
    key = cached_key(store, token) or await _verify_once(store, token)
    if key is None or key.revoked:
        raise _unauthorized("invalid or revoked API key")
    return key


# Verifications under way, by store and token: when a busy key's cache entry expires, the requests in
# flight (32 at concurrency 32) share one database lookup instead of each making its own.
_verifying: dict[tuple[int, str], asyncio.Future[ApiKey | None]] = {}


async def _verify_once(store: Store, token: str) -> ApiKey | None:
    slot = (id(store), token)
    pending = _verifying.get(slot)
    if pending is None:
        pending = asyncio.ensure_future(run_in_threadpool(verify_key, store, token))
        _verifying[slot] = pending
        pending.add_done_callback(lambda _: _verifying.pop(slot, None))
    return await asyncio.shield(pending)


def _allowed(key: ApiKey, scopes: tuple[Scope, ...]) -> ApiKey:
    if scopes and not any(key.allows(scope) for scope in scopes):
        wanted = " or ".join(repr(scope) for scope in scopes)
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this key lacks the {wanted} scope")
    return key


def _token(headers: Headers) -> str | None:
    """The key a request carries: `Authorization: Bearer <key>`, else `X-API-Key`."""
    scheme, credentials = get_authorization_scheme_param(headers.get("authorization"))
    return credentials if scheme.lower() == "bearer" and credentials else headers.get("x-api-key")


async def request_key(request: Request, *scopes: Scope) -> ApiKey:
    """`require_scope`'s checks (401, 403) as a plain call, for a route registered with `keyed`."""
    return _allowed(await _verified_key(request.app.state.store, _token(request.headers)), scopes)


# The OpenAPI security of a `keyed` route: what the dependency of `require_scope` declares.
KEY_SECURITY: dict[str, Any] = {"security": [{_bearer.scheme_name: []}, {_api_key_header.scheme_name: []}]}
_KEYED_ENDPOINTS: set[Callable[..., Any]] = set()


def keyed(endpoint: Callable[..., T]) -> Callable[..., T]:
    """Mark a route that checks its key itself (`request_key`): its key is then checked before its body
    is read, as for routes with a `require_scope` dependency. Declare `KEY_SECURITY` in its openapi_extra."""
    _KEYED_ENDPOINTS.add(endpoint)
    return endpoint


def require_scope(*scopes: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that admits a valid key with one of `scopes` (admin implies every scope; none
    given: any valid key)."""

    async def authenticated_key(
        store: StoreDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header_key: Annotated[str | None, Security(_api_key_header)],
    ) -> ApiKey:
        return _allowed(await _verified_key(store, bearer.credentials if bearer is not None else header_key), scopes)

    _KEY_CHECKS.add(authenticated_key)
    return authenticated_key


_KEY_CHECKS: set[Callable[..., Awaitable[ApiKey]]] = set()  # the dependencies `require_scope` made


def authenticate_before_body(routers: Iterable[APIRouter]) -> Callable[[AsgiScope], Awaitable[HTTPException | None]]:
    """A check for `AuthenticateFirstMiddleware`: the 401 for a request to one of the routers' routes that
    take a key, sent without a valid one; None to go on.

    Decided from the headers alone: the body is not touched. The scope check (403) stays with the route's
    dependency; so does a database that cannot be read (it answers 503).
    """
    keyed_routes = [
        route for route in api_routes(routers) if route.endpoint in _KEYED_ENDPOINTS or _has_key_check(route.dependant)
    ]

    async def check(scope: AsgiScope) -> HTTPException | None:
        if not any(route.matches(scope)[0] == Match.FULL for route in keyed_routes):
            return None
        try:
            await _verified_key(scope["app"].state.store, _token(Headers(scope=scope)))
        except HTTPException as exc:
            return exc
        except STORAGE_ERRORS:
            return None
        return None

    return check


def api_routes(routers: Iterable[APIRouter]) -> Iterator[APIRoute]:
    """Every APIRoute of the routers, including those of routers they include (kept nested by FastAPI 0.165+,
    as `original_router`; our routers are included without a prefix, so each route's path is its own)."""
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute):
                yield route
            elif isinstance(getattr(route, "original_router", None), APIRouter):
                yield from api_routes([route.original_router])  # type: ignore[attr-defined]


def _has_key_check(dependant: Dependant) -> bool:
    return any(d.call in _KEY_CHECKS or _has_key_check(d) for d in dependant.dependencies)


AnyKey = Annotated[ApiKey, Depends(require_scope())]  # any valid key, whatever its scopes
ScoreKey = Annotated[ApiKey, Depends(require_scope("score"))]
ReviewKey = Annotated[ApiKey, Depends(require_scope("review"))]
# Policy text (rule term lists), bundle paths, simulation: PMs and auditors (`read`), not score-only keys.
ReadKey = Annotated[ApiKey, Depends(require_scope("read"))]
# Queue monitoring: the reviewers' leads and the read-only audience.
MonitorKey = Annotated[ApiKey, Depends(require_scope("review", "read"))]
# Queue depth and age: reviewers, the read-only audience and review leads (the supervisor page).
QueueWatchKey = Annotated[ApiKey, Depends(require_scope("review", "read", "supervise"))]
AdminKey = Annotated[ApiKey, Depends(require_scope("admin"))]
# Decision audit (every decision with its listing, verdicts and reviewers): compliance.
AuditKey = Annotated[ApiKey, Depends(require_scope("audit"))]
# Review leads: correcting others' verdicts, gold items, reviewer quality.
SuperviseKey = Annotated[ApiKey, Depends(require_scope("supervise"))]
# Reviewer quality statistics: review leads and the read-only audience.
QualityKey = Annotated[ApiKey, Depends(require_scope("supervise", "read"))]
