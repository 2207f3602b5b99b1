"""The policy audit trail: every policy change (who, when, old and new), so a restart resumes the last."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from serving.store import schema
from serving.store.database import Database
from serving.store.records import PolicyChange


class PolicyAudit(Database):
    """Appending and reading policy changes."""

    def record_policy_change(self, actor: str, old: dict[str, Any], new: dict[str, Any]) -> PolicyChange:
        """Append a policy change to the audit trail; versions are read from the policies' `version`."""
        values: dict[str, Any] = {
            "at": self._clock(),
            "actor": actor,
            "old_version": _version(old),
            "new_version": _version(new),
            "old": old,
            "new": new,
        }
        statement = insert(schema.policy_audit).values(values).returning(schema.policy_audit.c.id)
        change_id = self._write(lambda conn: conn.execute(statement).scalar_one())
        return PolicyChange(id=int(change_id), **values)

    def policy_history(self, limit: int = 100) -> list[PolicyChange]:
        """Policy changes, newest first."""
        query = select(schema.policy_audit).order_by(schema.policy_audit.c.id.desc()).limit(limit)
        with self._read_engine.connect() as conn:
            return [PolicyChange(**row._mapping) for row in conn.execute(query)]

    def latest_policy(self) -> dict[str, Any] | None:
        """The policy most recently put in force, so a restarted service resumes it."""
        history = self.policy_history(limit=1)
        return history[0].new if history else None


def _version(policy: dict[str, Any]) -> str | None:
    version = policy.get("version")
    return None if version is None else str(version)
