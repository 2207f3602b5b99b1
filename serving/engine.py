"""The decision engine: listings -> features -> ONNX model -> calibrated risk -> policy -> decisions.

Immutable once built: a policy change or a new bundle builds a new engine and the service swaps the
reference atomically, so one request never sees half of an old policy and half of a new one.
Fail safe: whatever goes wrong while scoring, the affected listings get `human_review` with
`fallback_reason`, never an automated pass.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from features.policy import (
    AUTO_BLOCK,
    CODE_PASS,
    CODE_REVIEW,
    DECISIONS,
    HUMAN_REVIEW,
    Policy,
    match_rules,
    qa_sample,
    route,
)
from features.scoring import Bundle
from serving.store.records import DecisionRecord, StatementOfReasons, utcnow

log = logging.getLogger(__name__)

MODEL_UNAVAILABLE = "model_unavailable"
SCORING_ERROR = "scoring_error"
SCORING_TIMEOUT = "scoring_timeout"
TOP_REASONS = 3

# What the strongest signal behind a restrictive decision says about the kind of violation
# (EU DSA statement-of-reasons categories).
_DSA_CATEGORY_BY_FEATURE = {
    "prohibited_hits": "unsafe_and_prohibited_products",
    "luxury_brand_hits": "intellectual_property_infringements",
    "brand_is_luxury": "intellectual_property_infringements",
    "log_price_vs_category": "intellectual_property_infringements",
    "health_claim_hits": "consumer_information_infringements",
    "regulated_without_certificate": "unsafe_and_prohibited_products",
}
_DEFAULT_DSA_CATEGORY = "scope_of_platform_service"


@dataclass(frozen=True)
class Scores:
    """Model output for a batch: calibrated risk (NaN where scoring failed) and reasons per item."""

    risk: np.ndarray
    reasons: list[list[dict[str, Any]]]
    fallback_reason: str | None = None


@dataclass
class DecisionEngine:
    bundle: Bundle | None
    policy: Policy
    seed: int | None = None
    _rng: np.random.Generator = field(init=False, repr=False)
    _rng_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    @property
    def model_version(self) -> str | None:
        return self.bundle.version if self.bundle is not None else None

    @property
    def ready(self) -> bool:
        return self.bundle is not None

    def with_policy(self, policy: Policy) -> DecisionEngine:
        return DecisionEngine(bundle=self.bundle, policy=policy, seed=self.seed)

    # --- scoring --------------------------------------------------------------------------------
    def score(self, listings: list[dict[str, Any]]) -> Scores:
        """Calibrated risk and top reasons; never raises: failures come back as NaN + a reason."""
        n = len(listings)
        if self.bundle is None:
            return Scores(np.full(n, np.nan), [[] for _ in range(n)], MODEL_UNAVAILABLE)
        try:
            X = self.bundle.builder.transform_records(listings)
            risk = self.bundle.calibrator(self.bundle.raw_scores(X))
            return Scores(risk, self._reasons(X, risk))
        except Exception:
            log.exception("scoring failed for %d listings; routing them to human review", n)
            return Scores(np.full(n, np.nan), [[] for _ in range(n)], SCORING_ERROR)

    def _reasons(self, X: np.ndarray, risk: np.ndarray) -> list[list[dict[str, Any]]]:
        """Top features pushing each listing's risk up (TreeSHAP contributions to the log-odds)."""
        assert self.bundle is not None
        contributions = self.bundle.contributions(X)
        names = self.bundle.feature_names
        top = np.argsort(-contributions, axis=1)[:, :TOP_REASONS]
        out = []
        for row, order in enumerate(top):
            out.append([
                {"feature": names[j], "value": _finite_or_none(X[row, j]),
                 "contribution": round(float(contributions[row, j]), 4)}
                for j in order if contributions[row, j] > 0
            ])
        return out

    # --- deciding -------------------------------------------------------------------------------
    def decide(
        self, listings: list[dict[str, Any]], scores: Scores, request_id: str | None = None,
        received_at: datetime | None = None,
    ) -> list[DecisionRecord]:
        """Rules, then thresholds (per segment), then the QA sample: one DecisionRecord per listing."""
        policy = self.policy
        frame = pd.DataFrame.from_records(listings)
        rule_block, rule_review, matched = match_rules(frame, policy.rules)
        if policy.segment_by and policy.segment_by in frame:
            t_pass, t_block = policy.thresholds_for(frame[policy.segment_by].astype(str).to_numpy())
        else:
            t_pass = np.full(len(listings), policy.t_pass)
            t_block = np.full(len(listings), policy.t_block)
        codes = route(scores.risk, t_pass, t_block, rule_block, rule_review)
        with self._rng_lock:
            sampled = qa_sample(codes, policy.qa_sample_rate, self._rng)
        received_at = received_at or utcnow()
        records = []
        for i, listing in enumerate(listings):
            risk = float(scores.risk[i])
            scored = math.isfinite(risk)
            decision = DECISIONS[int(codes[i])]
            record = DecisionRecord(
                listing_id=str(listing["listing_id"]),
                decision=HUMAN_REVIEW if sampled[i] else decision,  # type: ignore[arg-type]
                automated=bool(codes[i] != CODE_REVIEW) and not sampled[i],
                policy_version=policy.version,
                listing=listing,
                risk=min(max(risk, 0.0), 1.0) if scored else None,
                model_version=self.model_version,
                t_pass=float(t_pass[i]),
                t_block=float(t_block[i]),
                priority=_priority(risk, bool(sampled[i]), bool(matched[i])),
                rules_matched=list(matched[i]),
                reasons=scores.reasons[i],
                qa_sample=bool(sampled[i]),
                would_have_been=decision if sampled[i] else None,  # type: ignore[arg-type]
                fallback_reason=None if scored else (scores.fallback_reason or MODEL_UNAVAILABLE),
                request_id=request_id,
                received_at=received_at,
            )
            if record.decision == AUTO_BLOCK:
                record = replace(record, statement_of_reasons=statement_of_reasons(record))
            records.append(record)
        return records


def fallback_scores(n: int, reason: str) -> Scores:
    return Scores(np.full(n, np.nan), [[] for _ in range(n)], reason)


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def _priority(risk: float, qa: bool, rule_hit: bool) -> float:
    """Queue order: likely violations first; unscored items high (nothing screened them); QA samples last."""
    if not math.isfinite(risk):
        return 1.0
    if qa:
        return 0.1 * risk
    return max(risk, 0.9) if rule_hit else risk


def statement_of_reasons(record: DecisionRecord, automated_decision: bool = True) -> dict[str, Any]:
    """EU DSA statement of reasons for a restrictive decision (auto-block or review-then-block)."""
    category = _DEFAULT_DSA_CATEGORY
    if record.rules_matched:
        category = "unsafe_and_prohibited_products"
    elif record.reasons:
        category = _DSA_CATEGORY_BY_FEATURE.get(record.reasons[0]["feature"], _DEFAULT_DSA_CATEGORY)
    facts = (
        f"rules matched: {', '.join(record.rules_matched)}; " if record.rules_matched else ""
    ) + (
        f"model risk {record.risk:.3f} >= block threshold {record.t_block:.3f}; "
        if record.risk is not None and record.t_block is not None else ""
    ) + "top signals: " + (", ".join(r["feature"] for r in record.reasons) or "none")
    return StatementOfReasons(
        puid=record.decision_id,
        decision_ground="incompatible_with_terms",
        category=category,
        facts_and_circumstances=facts,
        automated_detection=True,
        automated_decision=automated_decision,
        ground_reference=f"listing policy {record.policy_version}",
    ).to_dict()


