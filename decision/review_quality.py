"""The policy's review-quality plan: how often a verdict gets a blind second review, and how often a claim
hands out a gold item (a listing with a known answer) instead of a queue item.

Both are probabilities of one independent Bernoulli draw: a first verdict on a review-lane item is sent
back for a second review with probability `second_review_rate` (the draw and the rate are logged with the
queue item), and each item of a claim is a gold item with probability `gold_rate` (when the reviewer has
a gold item left that they have not seen). Second-reviewed items are therefore a simple random sample of
first verdicts, so agreement measured on them (`decision.agreement`) describes all of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class QualityPlan:
    """Rates of blind second review and of gold items, each in [0, 1]."""

    second_review_rate: float = 0.05
    gold_rate: float = 0.02

    def validate(self) -> QualityPlan:
        for name in ("second_review_rate", "gold_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"quality.{name}: {value!r} is not in [0, 1]")
        return self

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: Any) -> QualityPlan:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError(f"quality: expected a mapping, got {raw!r}")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"quality: unknown fields {unknown} (known: {sorted(cls.__dataclass_fields__)})")
        for key, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"quality.{key}: expected a number, got {value!r}")
        return cls(**{k: float(v) for k, v in raw.items()}).validate()
