"""Reads for production monitoring: the decisions of a time window joined with their verdicts (the verdict
in force: a corrected verdict counts as amended)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from serving.store import schema
from serving.store.corrections import VERDICT_IN_FORCE, VIOLATION_REASON_IN_FORCE, with_verdict_in_force
from serving.store.database import Database

d, r = schema.decisions, schema.reviews

MONITOR_COLUMNS = (
    d.c.decision_id,
    d.c.decided_at,
    d.c.decision,
    d.c.model_decision,
    d.c.automated,
    d.c.risk,
    d.c.model_version,
    d.c.inclusion_prob,
    d.c.qa_sample,
    d.c.decision_tier,
    d.c.listing,
    VERDICT_IN_FORCE,
    VIOLATION_REASON_IN_FORCE,
)


class MonitorReads(Database):
    def decisions_with_verdicts(self, since: datetime, until: datetime, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` decisions with since <= decided_at < until, newest first, each with its verdict
        (None while none is recorded) and reason."""
        query = (
            select(*MONITOR_COLUMNS)
            .select_from(with_verdict_in_force(d.outerjoin(r, r.c.decision_id == d.c.decision_id)))
            .where(d.c.decided_at >= since, d.c.decided_at < until)
            .order_by(d.c.decided_at.desc(), d.c.decision_id.desc())
            .limit(limit)
        )
        names = [column.name for column in MONITOR_COLUMNS]
        with self._read_engine.connect() as conn:
            rows = conn.execute(query).all()
        return [dict(zip(names, row, strict=True)) for row in rows]
