"""Policy administration: read, change (validated, versioned, audited, swapped atomically), reload."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from starlette.concurrency import run_in_threadpool

from bundle.manifest import BundleError
from serving.api.deps import AdminKey, AnyKey, EngineDep, SettingsDep, StoreDep
from serving.api.errors import field_error
from serving.api.schemas import PolicyChangeOut, PolicyOut, PolicyUpdate, ReloadRequest, ReloadResponse
from serving.models import load_engine, persist_policy, refreeze_after_swap, updated_policy

router = APIRouter(prefix="/v1", tags=["policy"])


def _admin_lock(request: Request) -> asyncio.Lock:
    return request.app.state.admin_lock


@router.get("/policy", response_model=PolicyOut)
async def get_policy(_key: AnyKey, engine: EngineDep) -> PolicyOut:
    """The policy in force (thresholds, rules, QA rate, version) and the model it applies to."""
    return PolicyOut(model_version=engine.model_version, ready=engine.ready, policy=engine.policy.to_dict())


@router.put(
    "/policy",
    response_model=PolicyOut,
    responses={
        409: {"description": "No model loaded, or the bundle cannot be written"},
        422: {"description": "Invalid policy (field named)"},
    },
)
async def put_policy(body: PolicyUpdate, key: AdminKey, request: Request, store: StoreDep) -> PolicyOut:
    """Put a new policy in force. Fields left out keep their current value; the version is assigned here.

    Saved into the bundle, audited with the key's name, then swapped in whole: each request sees either
    the old policy or the new one.
    """
    async with _admin_lock(request):
        engine = request.app.state.engine
        if not engine.ready:
            raise HTTPException(status.HTTP_409_CONFLICT, "no model bundle is loaded; reload one first")
        try:
            policy = updated_policy(engine.policy, body.model_dump(exclude_unset=True), engine.bundle)
        except ValueError as exc:
            field, _, _ = str(exc).partition(":")
            raise field_error(("body", field.split("[")[0].split(".")[0]), str(exc)) from exc
        try:
            await run_in_threadpool(persist_policy, engine.bundle, policy)
        except (BundleError, OSError, ValueError) as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, f"policy not saved: {exc}") from exc
        await run_in_threadpool(store.record_policy_change, key.name, engine.policy.to_dict(), policy.to_dict())
        request.app.state.engine = engine.with_policy(policy)  # one assignment: the atomic swap
    return PolicyOut(model_version=engine.model_version, ready=True, policy=policy.to_dict())


@router.get("/policy/history", response_model=list[PolicyChangeOut])
async def policy_history(
    _key: AnyKey, store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[PolicyChangeOut]:
    """Audited policy changes, newest first: who, when, old and new policy."""
    changes = await run_in_threadpool(store.policy_history, limit)
    return [PolicyChangeOut.model_validate(c, from_attributes=True) for c in changes]


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses={409: {"description": "Bundle refused (manifest mismatch, missing, unreadable)"}},
)
async def reload_bundle(
    key: AdminKey, request: Request, settings: SettingsDep, body: ReloadRequest | None = None
) -> ReloadResponse:
    """Load the bundle again (or another one). A bundle failing its checks is refused; the current one
    keeps serving."""
    path = (body.bundle if body is not None else None) or settings.bundle
    async with _admin_lock(request):
        try:
            engine = await run_in_threadpool(load_engine, path, settings.reasons)
        except BundleError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, f"bundle refused: {exc}") from exc
        request.app.state.engine = engine
        refreeze_after_swap()  # the replaced engine is freed, cycles included
    assert engine.bundle is not None
    return ReloadResponse(
        model_version=engine.model_version, policy_version=engine.policy.version, bundle=str(engine.bundle.path)
    )
