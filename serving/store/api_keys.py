"""API keys as stored: name, scopes, the hash of the token (never the token), revocation; and every change
of a key (created, rotated, revoked), with who made it and when, in `key_audit`, written in the change's
own transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from serving.store import schema
from serving.store.database import Database
from serving.store.records import ApiKey, ConflictError


class ApiKeyTable(Database):
    """Storing, finding and revoking API keys."""

    def insert_api_key(
        self,
        key_id: str,
        name: str,
        scopes: Iterable[str],
        key_hash: str,
        team: str | None = None,
        actor: str = "unknown",
    ) -> ApiKey:
        key = ApiKey(key_id, name, frozenset(scopes), self._clock(), revoked=False, team=team)
        scope_list = ",".join(sorted(key.scopes))
        values = {
            "key_id": key_id,
            "name": name,
            "scopes": scope_list,
            "key_hash": key_hash,
            "created_at": key.created_at,
            "revoked": False,
            "team": team,
        }

        def write(conn: Connection) -> None:
            conn.execute(insert(schema.api_keys).values(values))
            _audit(conn, key.created_at, actor, "create", name, scope_list, team)

        try:
            self._write(write)
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

    def revoke_api_key(self, name: str, actor: str = "unknown") -> bool:
        """Mark the key named `name` revoked (audited once: revoking it again changes nothing); False if
        there is no such key."""
        table = schema.api_keys

        def write(conn: Connection) -> bool:
            row = conn.execute(select(table.c.scopes, table.c.team).where(table.c.name == name)).first()
            if row is None:
                return False
            live = table.c.name == name, table.c.revoked.is_(False)
            if conn.execute(update(table).where(*live).values(revoked=True)).rowcount:
                _audit(conn, self._clock(), actor, "revoke", name, row.scopes, row.team)
            return True

        return bool(self._write(write))

    def replace_api_key(self, name: str, key_id: str, key_hash: str, actor: str = "unknown") -> ApiKey | None:
        """Give the live key named `name` a new id and token hash (the old token stops matching at once);
        None if there is no such key or it is revoked. Scopes and name stay."""
        table = schema.api_keys
        now = self._clock()
        statement = (
            update(table)
            .where(table.c.name == name, table.c.revoked.is_(False))
            .values(key_id=key_id, key_hash=key_hash, created_at=now)
        )

        def write(conn: Connection) -> bool:
            if not conn.execute(statement).rowcount:
                return False
            row = conn.execute(select(table.c.scopes, table.c.team).where(table.c.name == name)).one()
            _audit(conn, now, actor, "rotate", name, row.scopes, row.team)
            return True

        if not self._write(write):
            return None
        found = self.api_key_with_hash(key_id)
        return None if found is None else found[0]

    def key_changes(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every audited change of the keys (or of the key `name`), oldest first: when, who, what, which key
        with which scopes and team."""
        table = schema.key_audit
        query = select(table).order_by(table.c.id)
        if name is not None:
            query = query.where(table.c.key_name == name)
        with self._read_engine.connect() as conn:
            return [
                {
                    "at": row.at,
                    "actor": row.actor,
                    "event": row.event,
                    "key": row.key_name,
                    "scopes": [s for s in row.scopes.split(",") if s],
                    "team": row.team,
                }
                for row in conn.execute(query)
            ]


def _audit(conn: Connection, at: Any, actor: str, event: str, name: str, scopes: str, team: str | None) -> None:
    conn.execute(
        insert(schema.key_audit).values(at=at, actor=actor, event=event, key_name=name, scopes=scopes, team=team)
    )


def _api_key(row: Row[Any]) -> ApiKey:
    scopes = frozenset(s for s in row.scopes.split(",") if s)
    return ApiKey(row.key_id, row.name, scopes, row.created_at, bool(row.revoked), row.team)
