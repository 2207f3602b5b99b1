"""Moved to `features.segment_thresholds` (pure; the service's simulator needs it). Re-exported here."""

from __future__ import annotations

from features.segment_thresholds import SegmentChoice, choose_segmented, threshold_for

__all__ = ["SegmentChoice", "choose_segmented", "threshold_for"]
