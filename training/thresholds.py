"""Moved to `features.thresholds` (pure; the service's simulator needs it). Re-exported here."""

from __future__ import annotations

from features.thresholds import (
    ThresholdResult,
    choose_by_cost,
    choose_for_capacity,
    choose_policy_thresholds,
    choose_thresholds,
    default_rules,
)

__all__ = [
    "ThresholdResult",
    "choose_by_cost",
    "choose_for_capacity",
    "choose_policy_thresholds",
    "choose_thresholds",
    "default_rules",
]
