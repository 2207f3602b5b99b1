"""`GET /v1/keys/me`: the calling key's name and scopes, so a page can tell what the key may do before
offering it (the simulator page hides "apply" behind the admin scope)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from serving.api.deps import AnyKey

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyInfo(BaseModel):
    key_id: str
    name: str
    scopes: list[str] = Field(description="sorted; admin implies every scope")


@router.get("/me")
async def key_me(key: AnyKey) -> KeyInfo:
    """The key sending this request: its id, name and scopes (never its secret)."""
    return KeyInfo(key_id=key.key_id, name=key.name, scopes=sorted(key.scopes))
