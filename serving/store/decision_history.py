"""Reads for backtests on the decision log: the decisions of a window that have a verdict, shaped like a
bundle's `history.parquet` so `decision.backtest.backtest` runs on them unchanged.

Each row is one logged decision with a verdict: the listing's fields as the service received them,
`label` (1 for a reject), `violation_reason` and `review_seconds` from the verdict, the logged calibrated
`risk` and `tier_risk_<tier>`, `inclusion_prob` (1 for a decision sent to review, the audit rate of its
stratum for an automated one, so an audited automated decision counts 1 / pi times), and
`product_match` as product identification found it when the decision was made (the sources named by
the decision's match reasons). Unscored decisions (a fail-safe review, no risk) are left out: they say
nothing about rules beside the model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from decision.backtest import TIER_RISK_PREFIX
from features.identify import MATCH_SOURCES, PRODUCT_MATCH
from serving.store import schema
from serving.store.database import Database

d, r = schema.decisions, schema.reviews

# The reason features product identification adds to a decision (`features.identify.Identification`),
# by the match source each names.
MATCH_REASON_SOURCES = {"repost_match": "repost", "catalogue_match": "catalogue"}
DECISION_HISTORY_COLUMNS = (
    d.c.decision_id,
    d.c.decided_at,
    d.c.decision,
    d.c.policy_version,
    d.c.risk,
    d.c.tier_risk,
    d.c.inclusion_prob,
    d.c.reasons,
    d.c.listing,
    r.c.verdict,
    r.c.violation_reason,
    r.c.review_seconds,
)
# Columns of the log frame besides the listing's fields (they win over a listing field of the same name)
LOG_COLUMNS = (
    "decision_id",
    "decided_at",
    "logged_decision",
    "policy_version",
    "risk",
    "label",
    "violation_reason",
    "review_seconds",
    "inclusion_prob",
    PRODUCT_MATCH,
)


class DecisionHistoryReads(Database):
    def decision_history(
        self, model_version: str, since: datetime | None, until: datetime, limit: int
    ) -> tuple[pd.DataFrame, bool]:
        """The decisions of `model_version` with since <= decided_at < until (no lower bound for None)
        that the model scored and a person gave a verdict, oldest first, as a history frame (see the
        module docstring), with whether `limit` cut it (the most recent `limit` decisions are kept)."""
        query = (
            select(*DECISION_HISTORY_COLUMNS)
            .select_from(d.join(r, r.c.decision_id == d.c.decision_id))
            .where(d.c.model_version == model_version, d.c.risk.is_not(None), d.c.decided_at < until)
            .order_by(d.c.decided_at.desc(), d.c.decision_id.desc())
            .limit(limit + 1)
        )
        if since is not None:
            query = query.where(d.c.decided_at >= since)
        with self._read_engine.connect() as conn:
            rows = conn.execute(query).all()
        return history_frame([row._mapping for row in rows[:limit][::-1]]), len(rows) > limit


def history_frame(rows: list[Any]) -> pd.DataFrame:
    """Logged decisions joined with their verdicts (mappings of DECISION_HISTORY_COLUMNS) as history rows."""
    listings = pd.DataFrame.from_records([row["listing"] for row in rows], index=range(len(rows)))
    tiers = pd.DataFrame.from_records([row["tier_risk"] or {} for row in rows], index=range(len(rows)))
    logged = pd.DataFrame(
        {
            "decision_id": [row["decision_id"] for row in rows],
            "decided_at": pd.to_datetime([row["decided_at"] for row in rows], utc=True),
            "logged_decision": [row["decision"] for row in rows],
            "policy_version": [row["policy_version"] for row in rows],
            "risk": pd.array([row["risk"] for row in rows], dtype="float64"),
            "label": pd.array([int(row["verdict"] == "reject") for row in rows], dtype="int64"),
            "violation_reason": [row["violation_reason"] or "" for row in rows],
            "review_seconds": pd.array([row["review_seconds"] for row in rows], dtype="Float64").astype("float64"),
            "inclusion_prob": pd.array([row["inclusion_prob"] for row in rows], dtype="Float64").astype("float64"),
            PRODUCT_MATCH: [product_match(row["reasons"]) for row in rows],
        },
        index=range(len(rows)),
    )
    tiers.columns = [f"{TIER_RISK_PREFIX}{tier}" for tier in tiers.columns]
    listings = listings.drop(columns=[c for c in listings.columns if c in LOG_COLUMNS or c in tiers.columns])
    return pd.concat([listings, logged, tiers.astype("float64")], axis=1)


def product_match(reasons: list[dict[str, Any]] | None) -> str:
    """The match sources a decision's reasons name, space-separated in MATCH_SOURCES order ("" for none):
    the `product_match` the rules saw when it was decided."""
    found = {MATCH_REASON_SOURCES.get(str(reason.get("feature"))) for reason in reasons or ()}
    return " ".join(source for source in MATCH_SOURCES if source in found)
