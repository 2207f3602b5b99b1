"""Data contract: which column of a review-outcomes table plays which role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "data.yaml"


@dataclass(frozen=True)
class DataConfig:
    """Column roles of the historical-outcomes table (see configs/data.yaml)."""

    id: str = "listing_id"
    merchant: str = "merchant_id"
    timestamp: str = "created_at"
    label: str = "label"
    reviewed_at: str | None = "reviewed_at"
    review_lag_days: float = 7.0
    label_reject: tuple[Any, ...] = (1, "1", "reject", "rejected")
    label_approve: tuple[Any, ...] = (0, "0", "approve", "approved")
    text: tuple[str, ...] = ("title", "description", "brand")
    categorical: tuple[str, ...] = ("category", "market")
    numeric: tuple[str, ...] = ("price", "merchant_tenure_days", "image_count", "has_certificate")
    violation_reason: str | None = "violation_reason"
    review_seconds: str | None = "review_seconds"
    qa_overturned: str | None = None
    segments: tuple[str, ...] = ("category", "market")

    @property
    def required_columns(self) -> list[str]:
        """Columns that must be present: the roles plus every feature column."""
        return [self.id, self.merchant, self.timestamp, self.label, *self.feature_columns]

    @property
    def feature_columns(self) -> list[str]:
        return [*self.text, *self.categorical, *self.numeric]

    @property
    def listing_columns(self) -> list[str]:
        """Columns a listing carries at scoring time (no outcome fields)."""
        return [self.id, self.merchant, self.timestamp, *self.feature_columns]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "merchant": self.merchant,
            "timestamp": self.timestamp,
            "reviewed_at": self.reviewed_at,
            "review_lag_days": self.review_lag_days,
            "label": self.label,
            "label_values": {"reject": list(self.label_reject), "approve": list(self.label_approve)},
            "text": list(self.text),
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
            "violation_reason": self.violation_reason,
            "review_seconds": self.review_seconds,
            "qa_overturned": self.qa_overturned,
            "segments": list(self.segments),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataConfig:
        known = {
            "id",
            "merchant",
            "timestamp",
            "reviewed_at",
            "review_lag_days",
            "label",
            "label_values",
            "text",
            "categorical",
            "numeric",
            "violation_reason",
            "review_seconds",
            "qa_overturned",
            "segments",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"data config: unknown keys {unknown}; known keys are {sorted(known)}")
        for key in ("id", "merchant", "timestamp", "label"):
            if not isinstance(raw.get(key, "x"), str):
                raise ValueError(f"data config: '{key}' must be a column name")
        labels = raw.get("label_values") or {}
        base = cls()
        return cls(
            id=raw.get("id", base.id),
            merchant=raw.get("merchant", base.merchant),
            timestamp=raw.get("timestamp", base.timestamp),
            label=raw.get("label", base.label),
            reviewed_at=raw.get("reviewed_at", base.reviewed_at),
            review_lag_days=float(raw.get("review_lag_days", base.review_lag_days)),
            label_reject=tuple(labels.get("reject", base.label_reject)),
            label_approve=tuple(labels.get("approve", base.label_approve)),
            text=tuple(raw.get("text", base.text)),
            categorical=tuple(raw.get("categorical", base.categorical)),
            numeric=tuple(raw.get("numeric", base.numeric)),
            violation_reason=raw.get("violation_reason", base.violation_reason),
            review_seconds=raw.get("review_seconds", base.review_seconds),
            qa_overturned=raw.get("qa_overturned", base.qa_overturned),
            segments=tuple(raw.get("segments", base.segments)),
        )


def load_config(path: str | Path | None = None) -> DataConfig:
    """Read a YAML data config; the default config fits the built-in generator."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not path.exists():
        raise FileNotFoundError(f"data config not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"data config {path}: expected a mapping of role -> column")
    return DataConfig.from_dict(raw)
