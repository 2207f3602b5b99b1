"""Reviewed decisions as labelled outcomes in the data contract, ready for retraining.

Labels exist only where a person looked, so each row carries what retraining and production estimates
need to weight it: `inclusion_prob` (the chance the decision got a verdict: 1 for a human_review
decision, the audit probability of an automated one; NaN for a QA sample logged before probabilities
were kept), `qa_sample` (an audit of an automated decision) and `logged_decision` (the decision that
was in force when the verdict came). The outcome is the verdict in force: a verdict amended by a
correction exports the latest correction's verdict and reason, with `corrected` true.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd
from sqlalchemy import Row

from features.config import EXPORT_COLUMNS, DataConfig

logger = logging.getLogger(__name__)


def labelled_outcome(row: Row[Any], config: DataConfig) -> dict[str, Any]:
    """The stored listing plus its outcome: label (1 reject, 0 approve), reason, handling time, times, and
    whether the verdict was corrected. A config without a timestamp column (`time_order: row`) gets
    none: its rows' order is their time (the export is in verdict order)."""
    outcome = dict(row.listing)
    outcome.setdefault(config.id, row.listing_id)
    if config.timestamp and outcome.get(config.timestamp) is None:
        outcome[config.timestamp] = row.received_at
    outcome[config.label] = 1 if row.verdict == "reject" else 0
    if config.violation_reason:
        outcome[config.violation_reason] = row.violation_reason
    if config.review_seconds:
        outcome[config.review_seconds] = row.review_seconds
    if config.reviewed_at:
        outcome[config.reviewed_at] = row.reviewed_at
    outcome["decision_id"] = row.decision_id
    outcome["qa_sample"] = bool(row.qa_sample)
    outcome["inclusion_prob"] = _inclusion_prob(row)
    outcome["logged_decision"] = row.decision
    outcome["corrected"] = bool(row.corrected)
    return outcome


def _inclusion_prob(row: Row[Any]) -> float:
    """The logged probability; for rows logged before it was kept, 1 for a review (every one gets a
    verdict) and unknown (NaN) for an old QA sample."""
    if row.inclusion_prob is not None:
        return float(row.inclusion_prob)
    return math.nan if row.qa_sample else 1.0


def labels_frame(rows: list[dict[str, Any]], config: DataConfig) -> pd.DataFrame:
    """Outcome rows as a frame: contract columns first, then the other listing fields."""
    outcome_columns = [config.violation_reason, config.review_seconds, config.reviewed_at]
    columns = [c for c in (config.id, config.timestamp, config.label, *outcome_columns) if c]
    columns += [c for c in EXPORT_COLUMNS if c != "label_source"]  # label_source: `with_label_sources`
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame[config.label] = frame[config.label].astype("int64")
    frame["inclusion_prob"] = frame["inclusion_prob"].astype("float64")
    for column in (config.timestamp, config.reviewed_at):
        if column:
            frame[column] = _to_utc(frame[column], column)
    rest = [c for c in frame.columns if c not in columns]
    return frame[[c for c in columns if c in frame.columns] + rest]


def _to_utc(values: pd.Series, column: str) -> pd.Series:
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        logger.warning("export_labels: column %s has values that are not ISO timestamps; kept as is", column)
        return values


def in_config_label_values(frame: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """Labels 1 / 0 written as the config's first reject and approve values (spam / ham, say), so that the
    exported file trains with the config it came from and sits beside the history in one table."""
    reject, approve = config.label_reject[0], config.label_approve[0]
    if (reject, approve) == (1, 0) or frame.empty:
        return frame
    return frame.assign(**{config.label: frame[config.label].map({1: reject, 0: approve})})


def latest_verdict_per_listing(frame: pd.DataFrame, config: DataConfig) -> tuple[pd.DataFrame, int]:
    """One outcome per listing id (training refuses duplicate ids): the latest verdict wins, since a
    listing scored again (edited) and reviewed again is judged by its newest version.
    Returns the frame and how many older rows were superseded."""
    if frame.empty:
        return frame, 0
    order = config.reviewed_at if config.reviewed_at and config.reviewed_at in frame else None
    ranked = frame.sort_values(order, kind="stable") if order else frame
    latest = ranked.drop_duplicates(config.id, keep="last")
    kept = frame.loc[frame.index.isin(latest.index)].reset_index(drop=True)
    return kept, len(frame) - len(kept)
