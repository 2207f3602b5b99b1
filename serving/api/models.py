"""Model lifecycle routes: the audited history of model changes, the shadow model (set, clear, read) and
the shadow report (champion vs shadow decisions). Reloading the champion is `POST /v1/admin/reload`."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bundle.manifest import BundleError
from serving.api.deps import AdminKey, ReadKey, SettingsDep, StoreDep
from serving.api.schemas import ChangeReason
from serving.lifecycle import load_shadow, set_shadow
from serving.shadow import ShadowScorer, shadow_report
from serving.store.model_audit import ModelEvent

router = APIRouter(prefix="/v1", tags=["models"])


class ModelChangeOut(BaseModel):
    id: int
    at: datetime
    actor: str
    event: ModelEvent
    old_model: str | None
    new_model: str | None
    bundle: str | None
    registry_version: str | None
    policy_version: str | None
    reason: str | None


class ShadowSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle: str = Field(
        min_length=1,
        max_length=4096,
        description="A bundle under the models directory, or a registered model (models:/listing-risk@candidate).",
    )
    reason: ChangeReason


class ShadowOut(BaseModel):
    model_version: str | None
    policy_version: str | None
    counts: dict[str, int] = Field(description="Since this worker set the shadow: scored, errors, dropped.")


@router.get("/models/history", response_model=list[ModelChangeOut])
async def model_history(
    _key: ReadKey, store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[ModelChangeOut]:
    """Audited model changes, newest first: promotions, reloads (forced ones with their reason), the
    shadow set or cleared; who, when, why, old and new model, and the policy in force after."""
    changes = await run_in_threadpool(store.model_history, limit)
    return [ModelChangeOut.model_validate(c, from_attributes=True) for c in changes]


def _shadow_out(shadow: ShadowScorer | None) -> ShadowOut:
    if shadow is None:
        return ShadowOut(model_version=None, policy_version=None, counts={})
    return ShadowOut(
        model_version=shadow.model_version, policy_version=shadow.engine.policy.version, counts=shadow.counts.to_dict()
    )


@router.get("/shadow", response_model=ShadowOut)
async def get_shadow(_key: ReadKey, request: Request) -> ShadowOut:
    """The shadow model this worker scores beside the champion (model_version null: none)."""
    return _shadow_out(getattr(request.app.state, "shadow", None))


@router.put("/admin/shadow", response_model=ShadowOut, responses={400: {}, 409: {"description": "Bundle refused"}})
async def put_shadow(
    body: ShadowSet, key: AdminKey, request: Request, settings: SettingsDep, store: StoreDep
) -> ShadowOut:
    """Score every listing with this model too, after the champion, and log its decisions
    (`shadow_decisions`); it never changes a response. Audited; every worker follows within a second."""
    async with request.app.state.admin_lock:
        try:
            shadow = await run_in_threadpool(load_shadow, body.bundle, settings, store)
        except ValueError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
        except (BundleError, OSError) as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, f"shadow bundle refused: {exc}") from exc
        assert shadow.engine.bundle is not None
        await run_in_threadpool(
            partial(
                store.record_model_change,
                "shadow_set",
                key.name,
                new_model=shadow.model_version,
                bundle=str(shadow.engine.bundle.path),
                policy_version=shadow.engine.policy.version,
                reason=body.reason,
            )
        )
        set_shadow(request.app, shadow)
    return _shadow_out(shadow)


@router.delete("/admin/shadow", response_model=ShadowOut)
async def delete_shadow(
    reason: Annotated[ChangeReason, Query()], key: AdminKey, request: Request, store: StoreDep
) -> ShadowOut:
    """Stop shadow scoring (audited; the reason is a query parameter)."""
    async with request.app.state.admin_lock:
        old: ShadowScorer | None = getattr(request.app.state, "shadow", None)
        await run_in_threadpool(
            partial(
                store.record_model_change,
                "shadow_clear",
                key.name,
                old_model=old.model_version if old else None,
                reason=reason,
            )
        )
        set_shadow(request.app, None)
    return _shadow_out(None)


@router.get("/shadow/report")
async def get_shadow_report(
    _key: ReadKey,
    store: StoreDep,
    model_version: Annotated[str | None, Query(max_length=128, description="only this shadow model")] = None,
    since: Annotated[datetime | None, Query(description="only shadow decisions from this time on")] = None,
) -> dict[str, Any]:
    """Champion vs shadow: agreement, confusion of decisions, review share of each and its difference,
    and on listings with a verdict each model's misses and wrongful blocks, counted and audit-weighted
    (as `triage shadow-report`).
    Listings the champion could not score (sent to review by a timeout or an error) are left out and
    counted in `champion_fallbacks`."""
    pairs = await run_in_threadpool(store.shadow_pairs, model_version, since)
    return shadow_report(pairs)
