"""Typed dependencies: the store, the current engine, settings, and API-key authentication by scope.

All are `async def`: FastAPI runs a plain `def` dependency on a worker thread, a hop per dependency
per request that cost more than scoring itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from serving.engine import DecisionEngine
from serving.keys import cached_key, verify_key
from serving.metrics import Metrics
from serving.scorer import Scorer
from serving.settings import Settings
from serving.store import ApiKey, Scope, Store

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


StoreDep = Annotated[Store, Depends(get_store)]
EngineDep = Annotated[DecisionEngine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ScorerDep = Annotated[Scorer, Depends(get_scorer)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def require_scope(*scopes: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that admits a valid key with one of `scopes` (admin implies every scope; none
    given: any valid key)."""

    async def authenticated_key(
        store: StoreDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header_key: Annotated[str | None, Security(_api_key_header)],
    ) -> ApiKey:
        token = bearer.credentials if bearer is not None else header_key
        if not token:
            raise _unauthorized("an API key is required (Authorization: Bearer <key> or X-API-Key)")
        key = cached_key(store, token) or await run_in_threadpool(verify_key, store, token)
        if key is None or key.revoked:
            raise _unauthorized("invalid or revoked API key")
        if scopes and not any(key.allows(scope) for scope in scopes):
            wanted = " or ".join(repr(scope) for scope in scopes)
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this key lacks the {wanted} scope")
        return key

    return authenticated_key


AnyKey = Annotated[ApiKey, Depends(require_scope())]  # any valid key, whatever its scopes
ScoreKey = Annotated[ApiKey, Depends(require_scope("score"))]
ReviewKey = Annotated[ApiKey, Depends(require_scope("review"))]
# Policy text (rule term lists), bundle paths, simulation: PMs and auditors (`read`), not score-only keys.
ReadKey = Annotated[ApiKey, Depends(require_scope("read"))]
# Queue monitoring: the reviewers' leads and the read-only audience.
MonitorKey = Annotated[ApiKey, Depends(require_scope("review", "read"))]
AdminKey = Annotated[ApiKey, Depends(require_scope("admin"))]
