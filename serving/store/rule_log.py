"""Reads for rule analytics: the decisions of a time window with their rule hits and verdicts (the verdict
in force: a corrected verdict counts as amended)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import select

from serving.store import schema
from serving.store.corrections import VERDICT_IN_FORCE, with_verdict_in_force
from serving.store.database import Database

d, r = schema.decisions, schema.reviews

RULE_LOG_COLUMNS = (
    d.c.decision_id,
    d.c.decided_at,
    d.c.decision,
    d.c.model_decision,
    d.c.rules_matched,
    d.c.rules_shadow,
    d.c.inclusion_prob,
    VERDICT_IN_FORCE,
    r.c.review_seconds,
)


class RuleLogReads(Database):
    def rule_log(self, since: datetime, until: datetime, limit: int) -> tuple[pd.DataFrame, bool]:
        """The decisions with since <= decided_at < until, oldest first, joined with their verdicts (None
        while none is recorded): the frame `decision.rule_stats` reads, with whether `limit` cut it (the
        most recent `limit` decisions are kept)."""
        query = (
            select(*RULE_LOG_COLUMNS)
            .select_from(with_verdict_in_force(d.outerjoin(r, r.c.decision_id == d.c.decision_id)))
            .where(d.c.decided_at >= since, d.c.decided_at < until)
            .order_by(d.c.decided_at.desc(), d.c.decision_id.desc())
            .limit(limit + 1)
        )
        with self._read_engine.connect() as conn:
            rows = conn.execute(query).all()
        truncated = len(rows) > limit
        frame = pd.DataFrame(rows[:limit][::-1], columns=[c.name for c in RULE_LOG_COLUMNS])
        for column in ("rules_matched", "rules_shadow"):  # NULL before shadow rules were logged
            frame[column] = frame[column].map(lambda names: names or [])
        return frame, truncated
