"""API key administration (admin scope): list, create, revoke, rotate, and the audited history of those
changes (who, when). A token is returned once, on create or rotate; only its hash is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from serving.api.deps import AdminKey, StoreDep
from serving.keys import create_key, parse_scopes, revoke_key, rotate_key
from serving.store import ApiKey, ConflictError, Store

router = APIRouter(prefix="/v1/admin/keys", tags=["api keys"])

KeyName = Annotated[str, Path(min_length=1, max_length=128)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such key (for rotate: no such live key)"}}


class KeyOut(BaseModel):
    """A key as stored, without its secret."""

    key_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked: bool
    team: str | None = Field(default=None, description="The reviewers' team, for reviewer quality per team.")

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            key_id=key.key_id,
            name=key.name,
            scopes=sorted(key.scopes),
            created_at=key.created_at,
            revoked=key.revoked,
            team=key.team,
        )


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="Who uses the key; reviewers are recorded by it.")
    scopes: list[str] = Field(min_length=1, max_length=8, description="score, review, read, audit, supervise, admin")
    team: str | None = Field(
        default=None, min_length=1, max_length=128, description="The reviewers' team (e.g. a vendor), optional."
    )

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        return sorted(parse_scopes(scopes))


class KeyToken(BaseModel):
    """The key and its token: store the token now, it is not shown again."""

    key: KeyOut
    token: str


class KeyChange(BaseModel):
    """One audited change of a key: created, given a new token (rotate) or revoked, by whom and when."""

    at: datetime
    actor: str = Field(description="The admin key that made it, or the operator of `triage keys`.")
    event: str = Field(description="create, rotate or revoke")
    key: str
    scopes: list[str]
    team: str | None = None


@router.get("/history", response_model=list[KeyChange])
async def history(
    _key: AdminKey,
    store: StoreDep,
    name: Annotated[str | None, Query(min_length=1, max_length=128, description="only this key's changes")] = None,
) -> list[KeyChange]:
    """Every change of the API keys, oldest first: who created, rotated or revoked which key, and when."""
    return [KeyChange(**change) for change in await run_in_threadpool(store.key_changes, name)]


@router.get("", response_model=list[KeyOut])
async def list_keys(_key: AdminKey, store: StoreDep) -> list[KeyOut]:
    """Every key, oldest first, revoked ones included; never a token or its hash."""
    return [KeyOut.of(key) for key in await run_in_threadpool(store.list_api_keys)]


@router.post(
    "",
    response_model=KeyToken,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "A key with this name already exists"}},
)
async def create(body: KeyCreate, key: AdminKey, store: StoreDep) -> KeyToken:
    """Create a key; the response holds its token, shown this once."""
    try:
        token = await run_in_threadpool(create_key, store, body.name, body.scopes, body.team, key.name)
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return KeyToken(key=await _named(store, body.name), token=token)


@router.post("/{name}/revoke", response_model=KeyOut, responses=_NOT_FOUND)
async def revoke(name: KeyName, key: AdminKey, store: StoreDep) -> KeyOut:
    """Revoke a key: refused by every process within a second."""
    if not await run_in_threadpool(revoke_key, store, name, key.name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key named {name!r}")
    return await _named(store, name)


@router.post("/{name}/rotate", response_model=KeyToken, responses=_NOT_FOUND)
async def rotate(name: KeyName, key: AdminKey, store: StoreDep) -> KeyToken:
    """Replace a live key's token (same name and scopes); the old token is refused within a second."""
    token = await run_in_threadpool(rotate_key, store, name, key.name)
    if token is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live API key named {name!r}")
    return KeyToken(key=await _named(store, name), token=token)


async def _named(store: Store, name: str) -> KeyOut:
    keys = await run_in_threadpool(store.list_api_keys)
    return next(KeyOut.of(key) for key in keys if key.name == name)
