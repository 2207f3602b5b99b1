"""The policy in force and its audit trail: each change (who, when, why, old and new) is written with
the new policy version in one transaction, so there is never a policy in force without its audit row,
nor an audit row for a policy that never took effect."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from serving.store import schema
from serving.store.database import Database
from serving.store.records import PolicyChange


class PolicyAudit(Database):
    """Putting policies in force (audited) and reading them back."""

    def put_policy_in_force(
        self, bundle_version: str, actor: str, reason: str | None, old: dict[str, Any], new: dict[str, Any]
    ) -> PolicyChange:
        """Store `new` as the policy in force for the bundle and audit the change, in one transaction.
        Versions are read from the policies' `version`; a version already stored is a conflict
        (IntegrityError) and nothing is written."""
        at = self._clock()
        audit = policy_audit_row(at, actor, reason, old, new)
        version = {"bundle_version": bundle_version, "version": _version(new), "at": at, "policy": new}

        def write(conn: Connection) -> int:
            conn.execute(insert(schema.policy_versions).values(version))
            statement = insert(schema.policy_audit).values(audit).returning(schema.policy_audit.c.id)
            return int(conn.execute(statement).scalar_one())

        return PolicyChange(id=self._write(write), **audit)

    def policy_in_force(self, bundle_version: str) -> dict[str, Any] | None:
        """The policy last put in force for this bundle, or None (then the bundle's own policy applies)."""
        table = schema.policy_versions
        query = select(table.c.policy).where(table.c.bundle_version == bundle_version).order_by(table.c.id.desc())
        with self._read_engine.connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return None if row is None else dict(row.policy)

    def policy_version_count(self) -> int:
        """How many policy versions were ever put in force (for numbering the next one)."""
        with self._read_engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.policy_versions)).scalar_one())

    def policy_history(self, limit: int = 100) -> list[PolicyChange]:
        """Policy changes, newest first."""
        query = select(schema.policy_audit).order_by(schema.policy_audit.c.id.desc()).limit(limit)
        with self._read_engine.connect() as conn:
            return [PolicyChange(**row._mapping) for row in conn.execute(query)]


def policy_audit_row(
    at: datetime, actor: str, reason: str | None, old: dict[str, Any], new: dict[str, Any]
) -> dict[str, Any]:
    """The `policy_audit` row of a change from policy `old` to `new`."""
    return {
        "at": at,
        "actor": actor,
        "old_version": _version(old),
        "new_version": _version(new),
        "old": old,
        "new": new,
        "reason": reason,
    }


def policy_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether putting `new` in force after `old` changes the policy deciding (its version)."""
    return _version(old) != _version(new)


def _version(policy: dict[str, Any]) -> str | None:
    version = policy.get("version")
    return None if version is None else str(version)
