"""API keys as stored: name, scopes, the hash of the token (never the token), revocation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from serving.store import schema
from serving.store.database import Database
from serving.store.records import ApiKey, ConflictError


class ApiKeyTable(Database):
    """Storing, finding and revoking API keys."""

    def insert_api_key(
        self, key_id: str, name: str, scopes: Iterable[str], key_hash: str, team: str | None = None
    ) -> ApiKey:
        key = ApiKey(key_id, name, frozenset(scopes), self._clock(), revoked=False, team=team)
        values = {
            "key_id": key_id,
            "name": name,
            "scopes": ",".join(sorted(key.scopes)),
            "key_hash": key_hash,
            "created_at": key.created_at,
            "revoked": False,
            "team": team,
        }
        try:
            self._write(lambda conn: conn.execute(insert(schema.api_keys).values(values)))
        except IntegrityError as exc:
            raise ConflictError(f"an API key named {name!r} already exists") from exc
        return key

    def api_key_with_hash(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its stored hash, for verification."""
        query = select(schema.api_keys).where(schema.api_keys.c.key_id == key_id)
        with self._read_engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (_api_key(row), str(row.key_hash))

    def list_api_keys(self) -> list[ApiKey]:
        query = select(schema.api_keys).order_by(schema.api_keys.c.created_at)
        with self._read_engine.connect() as conn:
            return [_api_key(row) for row in conn.execute(query)]

    def revoke_api_key(self, name: str) -> bool:
        """Mark the key named `name` revoked; False if there is no such key."""
        statement = update(schema.api_keys).where(schema.api_keys.c.name == name).values(revoked=True)
        return bool(self._write(lambda conn: conn.execute(statement).rowcount))

    def replace_api_key(self, name: str, key_id: str, key_hash: str) -> ApiKey | None:
        """Give the live key named `name` a new id and token hash (the old token stops matching at once);
        None if there is no such key or it is revoked. Scopes and name stay."""
        table = schema.api_keys
        statement = (
            update(table)
            .where(table.c.name == name, table.c.revoked.is_(False))
            .values(key_id=key_id, key_hash=key_hash, created_at=self._clock())
        )
        if not self._write(lambda conn: conn.execute(statement).rowcount):
            return None
        found = self.api_key_with_hash(key_id)
        return None if found is None else found[0]


def _api_key(row: Row[Any]) -> ApiKey:
    scopes = frozenset(s for s in row.scopes.split(",") if s)
    return ApiKey(row.key_id, row.name, scopes, row.created_at, bool(row.revoked), row.team)
