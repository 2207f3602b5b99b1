"""Shadow decisions: what the candidate model would have decided for each champion decision.

Written after the champion's decision is logged, off the request's path; read back joined with the
champion's decision and any verdict for `triage shadow-report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from serving.store import schema
from serving.store.database import Database


@dataclass(frozen=True, slots=True)
class ShadowDecision:
    """The shadow model's decision for the champion decision `decision_id` (never acted on)."""

    decision_id: str
    decided_at: datetime
    model_version: str
    policy_version: str
    risk: float | None
    decision: str
    tier_risk: dict[str, float] | None = None


class ShadowLog(Database):
    """Logging shadow decisions and reading them beside the champion's."""

    def record_shadow_decisions(self, rows: Sequence[ShadowDecision]) -> None:
        if not rows:
            return
        params = [asdict(row) for row in rows]

        def write(conn: Connection) -> None:
            # a retried request's decision was shadow-scored the first time: keep that row
            statement = (sqlite_insert if self.dialect == "sqlite" else postgresql_insert)(schema.shadow_decisions)
            conn.execute(statement.on_conflict_do_nothing(index_elements=["decision_id"]), params)

        self._write(write)

    def shadow_pairs(self, model_version: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        """Each shadow decision with the champion's (the policy's routing: `would_have_been` when a QA
        sample relabelled it; `champion_fallback` its fallback reason when it could not score) and the
        reviewer's verdict where there is one (else None)."""
        s, d, rv = schema.shadow_decisions, schema.decisions, schema.reviews
        query = (
            select(
                s.c.decision_id,
                s.c.decided_at,
                s.c.model_version.label("shadow_model"),
                s.c.risk.label("shadow_risk"),
                s.c.decision.label("shadow_decision"),
                d.c.model_version.label("champion_model"),
                d.c.risk.label("champion_risk"),
                func.coalesce(d.c.would_have_been, d.c.decision).label("champion_decision"),
                d.c.fallback_reason.label("champion_fallback"),
                d.c.inclusion_prob,
                rv.c.verdict,
            )
            .join_from(s, d, s.c.decision_id == d.c.decision_id)
            .outerjoin(rv, rv.c.decision_id == s.c.decision_id)
            .order_by(s.c.decided_at)
        )
        if model_version is not None:
            query = query.where(s.c.model_version == model_version)
        if since is not None:
            query = query.where(s.c.decided_at >= since)
        with self._read_engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]
