"""The audited history of the models a service serves and shadows, and the cheap marks every worker polls.

Rows are only ever added. The latest `promote`, `reload` or `forced_reload` row is the model in force;
the latest `shadow_set` or `shadow_clear` row says which model, if any, is shadow-scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, func, insert, select

from serving.store import schema
from serving.store.database import Database
from serving.store.policy_audit import policy_audit_row, policy_changed

ModelEvent = Literal["promote", "reload", "forced_reload", "shadow_set", "shadow_clear"]
SERVING_EVENTS: tuple[ModelEvent, ...] = ("promote", "reload", "forced_reload")
SHADOW_EVENTS: tuple[ModelEvent, ...] = ("shadow_set", "shadow_clear")


@dataclass(frozen=True)
class ModelChange:
    """One audited model change: who, when, what (event, old and new model, bundle), why."""

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


@dataclass(frozen=True)
class ChangeMarks:
    """The newest policy version and model change ids: a worker whose marks differ has something to load."""

    policy: int | None
    model: int | None


class ModelAudit(Database):
    """Recording model changes and reading them back."""

    def record_model_change(
        self,
        event: ModelEvent,
        actor: str,
        *,
        old_model: str | None = None,
        new_model: str | None = None,
        bundle: str | None = None,
        registry_version: str | None = None,
        policy_version: str | None = None,
        reason: str | None = None,
        policies: tuple[dict[str, Any], dict[str, Any]] | None = None,
    ) -> ModelChange:
        """Record a model change. `policies`, the policy deciding before and after it (a model brings the
        policy in force for its bundle: the one stored for it, else its policy.json), adds a row to the
        policy history in the same transaction when the two differ, so that history holds every policy
        that ever decided."""
        at = self._clock()
        values = {
            "at": at,
            "actor": actor,
            "event": event,
            "old_model": old_model,
            "new_model": new_model,
            "bundle": bundle,
            "registry_version": registry_version,
            "policy_version": policy_version,
            "reason": reason,
        }
        statement = insert(schema.model_audit).values(values).returning(schema.model_audit.c.id)
        policy_row = None
        if policies is not None and policy_changed(*policies):
            why = f"{event} of model {new_model} put the policy in force for its bundle"
            policy_row = policy_audit_row(at, actor, f"{why}: {reason}" if reason else why, *policies)

        def write(conn: Connection) -> int:
            if policy_row is not None:
                conn.execute(insert(schema.policy_audit).values(policy_row))
            return int(conn.execute(statement).scalar_one())

        change_id = self._write(write)
        return ModelChange(id=change_id, **values)  # type: ignore[arg-type]

    def model_history(self, limit: int = 100) -> list[ModelChange]:
        """Model changes, newest first."""
        query = select(schema.model_audit).order_by(schema.model_audit.c.id.desc()).limit(limit)
        with self._read_engine.connect() as conn:
            return [ModelChange(**row._mapping) for row in conn.execute(query)]

    def latest_model_change(self, events: tuple[ModelEvent, ...]) -> ModelChange | None:
        """The newest change of one of these kinds (SERVING_EVENTS: the model in force), or None."""
        table = schema.model_audit
        query = select(table).where(table.c.event.in_(events)).order_by(table.c.id.desc()).limit(1)
        with self._read_engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else ModelChange(**row._mapping)

    def change_marks(self) -> ChangeMarks:
        """One cheap query (two index lookups) for the poll every worker runs each second."""
        policy = select(func.max(schema.policy_versions.c.id)).scalar_subquery()
        model = select(func.max(schema.model_audit.c.id)).scalar_subquery()
        with self._read_engine.connect() as conn:
            row = conn.execute(select(policy, model)).one()
        return ChangeMarks(policy=row[0], model=row[1])
