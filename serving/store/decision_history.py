"""Reads for backtests on the decision log: the decisions of a window that have a verdict, shaped like a
bundle's `history.parquet` so `decision.backtest.backtest` runs on them unchanged.

Each row is one logged decision with a verdict: the listing's fields as the service received them,
`label` (1 for a reject), `violation_reason` and `review_seconds` from the verdict (the verdict in force: a
corrected verdict counts as amended), the logged calibrated
`risk` and `tier_risk_<tier>`, `inclusion_prob` (1 for a decision sent to review, the audit rate of its
stratum for an automated one, so an audited automated decision counts 1 / pi times), and
`product_match` as product identification found it when the decision was made (the sources named by
the decision's match reasons). Unscored decisions (a fail-safe review, no risk) are left out: they say
nothing about rules beside the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from decision.backtest import TIER_RISK_PREFIX
from features.config import INCLUSION_PROB
from features.identify import MATCH_SOURCES, PRODUCT_MATCH
from serving.store import schema
from serving.store.corrections import VERDICT_IN_FORCE, VIOLATION_REASON_IN_FORCE, with_verdict_in_force
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
    VERDICT_IN_FORCE,
    VIOLATION_REASON_IN_FORCE,
    r.c.review_seconds,
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
            .select_from(with_verdict_in_force(d.join(r, r.c.decision_id == d.c.decision_id)))
            .where(d.c.model_version == model_version, d.c.risk.is_not(None), d.c.decided_at < until)
            .order_by(d.c.decided_at.desc(), d.c.decision_id.desc())
            .limit(limit + 1)
        )
        if since is not None:
            query = query.where(d.c.decided_at >= since)
        with self._read_engine.connect() as conn:
            rows = conn.execute(query).all()
        kept = rows[:limit][::-1]
        names = [c.name for c in DECISION_HISTORY_COLUMNS]
        columns: dict[str, Sequence[Any]] = dict.fromkeys(names, ())
        if kept:
            columns = dict(zip(names, zip(*kept, strict=True), strict=True))
        return history_frame(columns), len(rows) > limit


def history_frame(logged: dict[str, Sequence[Any]]) -> pd.DataFrame:
    """Logged decisions joined with their verdicts (a sequence per column of DECISION_HISTORY_COLUMNS, by
    name) as history rows."""
    index = range(len(logged["decision_id"]))
    listings = pd.DataFrame.from_records(list(logged["listing"]), index=index)
    tiers = pd.DataFrame.from_records([tier_risk or {} for tier_risk in logged["tier_risk"]], index=index)
    frame = pd.DataFrame(
        {
            "decision_id": list(logged["decision_id"]),
            "decided_at": pd.to_datetime(list(logged["decided_at"]), utc=True),
            "logged_decision": list(logged["decision"]),
            "policy_version": list(logged["policy_version"]),
            "risk": np.array(logged["risk"], dtype=np.float64),
            "label": np.array([verdict == "reject" for verdict in logged["verdict"]], dtype=np.int64),
            "violation_reason": [reason or "" for reason in logged["violation_reason"]],
            "review_seconds": np.array(logged["review_seconds"], dtype=np.float64),  # None -> NaN
            INCLUSION_PROB: np.array(logged["inclusion_prob"], dtype=np.float64),
            PRODUCT_MATCH: [product_match(reasons) for reasons in logged["reasons"]],
        },
        index=index,
    )
    tiers.columns = [f"{TIER_RISK_PREFIX}{tier}" for tier in tiers.columns]
    listings = listings.drop(columns=[c for c in listings.columns if c in frame.columns or c in tiers.columns])
    return pd.concat([listings, frame, tiers.astype("float64")], axis=1)


def product_match(reasons: list[dict[str, Any]] | None) -> str:
    """The match sources a decision's reasons name, space-separated in MATCH_SOURCES order ("" for none):
    the `product_match` the rules saw when it was decided."""
    found = {MATCH_REASON_SOURCES.get(str(reason.get("feature"))) for reason in reasons or ()}
    return " ".join(source for source in MATCH_SOURCES if source in found)
