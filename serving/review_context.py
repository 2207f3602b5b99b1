"""What a reviewer needs to judge one queued item, built from the item alone (its listing and decision).

The listing with its price against the category's typical price, the merchant's history as scoring sees
it (the bundle's snapshot plus the verdicts recorded since, point in time at the listing's creation), the
risk per tier against each threshold, every signal and rule in words (`serving.reasons`), product matches,
similar past cases with their verdicts, and the policy excerpt of every violation reason the reviewer can
choose. Only the `QueueItem` is read, never the decisions table, so items queued by other means (gold
items) are shown alike.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from features.config import DataConfig
from features.identify import PastCase
from features.merchant import MERCHANT_FEATURES
from features.validate import DataValidationError
from serving.engine import DecisionEngine
from serving.reasons import ReviewTexts, price_ratio_words, rule_in_words
from serving.store.records import QueueItem

log = logging.getLogger(__name__)

SIMILAR_CASES = 5
MATCH_SIGNALS = ("repost_match", "catalogue_match")


@dataclass(frozen=True)
class PriceView:
    price: float | None
    category_median_price: float | None = None  # the bundle's typical price of the listing's category
    ratio: float | None = None  # price / category median
    words: str = ""


@dataclass(frozen=True)
class MerchantView:
    merchant_id: str | None
    prior_reviews: int | None = None
    prior_rejects: int | None = None
    reject_rate: float | None = None  # rejects / reviews (None without reviews)
    days_since_last_reject: float | None = None


@dataclass(frozen=True)
class TierView:
    name: str
    risk: float
    t_pass: float | None


@dataclass(frozen=True)
class RiskView:
    risk: float | None
    t_pass: float | None
    t_block: float | None
    decision: str
    decision_tier: str | None
    tiers: list[TierView]
    fallback_reason: str | None
    model_version: str | None
    policy_version: str


@dataclass(frozen=True)
class SignalView:
    signal: str  # the logged name (for tools); the page shows `words`
    words: str
    contribution: float | None


@dataclass(frozen=True)
class RuleView:
    name: str
    action: str
    mode: str  # enforce (acted) | shadow (logged only)
    checks: str


@dataclass(frozen=True)
class MatchView:
    kind: str  # repost | catalogue
    words: str
    matched_listing_id: str | None
    similarity: float | None
    catalogue_entry_id: str | None
    catalogue_name: str | None


@dataclass(frozen=True)
class ReasonOption:
    reason: str
    title: str
    section: str | None
    excerpt: str | None


@dataclass(frozen=True)
class ReviewContext:
    lane: str
    lane_words: str
    lease_expires_at: datetime | None
    listing_id: str
    listing: dict[str, str]  # the listing's text and category columns, under the data config's names
    title_column: str | None  # the column the page shows as the title (the config's first text column)
    description_column: str | None  # and as the description (its second), when there is one
    price: PriceView
    merchant: MerchantView
    risk: RiskView
    reasons: list[SignalView]
    rules: list[RuleView]
    product_matches: list[MatchView]
    similar_available: bool
    similar_cases: list[PastCase]
    violation_reasons: list[ReasonOption]


def review_context(item: QueueItem, engine: DecisionEngine, texts: ReviewTexts) -> ReviewContext:
    record, listing = item.decision, item.decision.listing
    features = _features(engine, listing)
    signals = [r for r in record.reasons if r.get("feature") not in MATCH_SIGNALS]
    matches = [r for r in record.reasons if r.get("feature") in MATCH_SIGNALS]
    similar = _similar(engine, listing)
    config = engine.config or DataConfig()  # without a bundle: the built-in marketplace's columns
    text, categorical = list(config.text), list(config.categorical)
    return ReviewContext(
        lane=item.lane,
        lane_words=_lane_words(item),
        lease_expires_at=item.lease_expires_at,
        listing_id=record.listing_id,
        listing={c: str(listing[c]) for c in [*text, *categorical] if listing.get(c) not in (None, "")},
        title_column=text[0] if text else None,
        description_column=text[1] if len(text) > 1 else None,
        price=_price(engine, listing, features),
        merchant=_merchant(engine, listing, features),
        risk=_risk(item, engine),
        reasons=[
            SignalView(str(r["feature"]), texts.catalogue.describe(r, listing), r.get("contribution")) for r in signals
        ],
        rules=_rules(item, engine),
        product_matches=[_match(r, texts, listing) for r in matches],
        similar_available=similar is not None,
        similar_cases=similar or [],
        violation_reasons=_options(engine, texts),
    )


def _lane_words(item: QueueItem) -> str:
    if item.lane == "audit":
        return f"audit of an automated decision in force: {item.decision.decision}"
    if item.lane == "second":
        return "second review: give your own verdict (another reviewer's is not shown)"
    return "review: the listing waits for your decision"


def _features(engine: DecisionEngine, listing: dict[str, Any]) -> dict[str, float] | None:
    """The listing's features as the serving bundle computes them now (None without a bundle, or for a
    listing it cannot read, e.g. without a creation time)."""
    if engine.bundle is None:
        return None
    builder = engine.bundle.builder
    try:
        row = builder.transform_records([listing])[0]
    except (DataValidationError, ValueError, TypeError, KeyError):
        log.warning("review context: features of listing %s could not be built", listing.get(engine.id_column))
        return None
    return dict(zip(builder.feature_names, row.astype(np.float64).tolist(), strict=True))


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _price(engine: DecisionEngine, listing: dict[str, Any], features: dict[str, float] | None) -> PriceView:
    price = _number(listing.get("price"))
    if price is None or features is None or "log_price_vs_category" not in features or engine.bundle is None:
        return PriceView(price)
    builder = engine.bundle.builder
    norm = builder.price_norms.get(str(listing.get("category", "")), builder.global_price_norm)
    if not math.isfinite(norm):
        return PriceView(price)
    ratio = math.exp(features["log_price_vs_category"])  # (1 + price) / (1 + median): the feature's own ratio
    median = math.expm1(norm)
    return PriceView(
        price, round(median, 2), round(ratio, 4), f"{price_ratio_words(ratio)} the category's typical price"
    )


def _merchant(engine: DecisionEngine, listing: dict[str, Any], features: dict[str, float] | None) -> MerchantView:
    column = engine.bundle.config.merchant if engine.bundle is not None else None
    merchant_id = str(listing[column]) if column and listing.get(column) is not None else None
    if features is None or not all(name in features for name in MERCHANT_FEATURES):
        return MerchantView(merchant_id)
    reviews, rejects = int(features["merchant_prior_reviews"]), int(features["merchant_prior_rejects"])
    return MerchantView(
        merchant_id,
        reviews,
        rejects,
        round(rejects / reviews, 4) if reviews else None,
        _number(features["merchant_days_since_last_reject"]),
    )


def _risk(item: QueueItem, engine: DecisionEngine) -> RiskView:
    record = item.decision
    tier_pass = engine.policy.tier_pass
    tiers = [TierView(name, risk, tier_pass.get(name)) for name, risk in (record.tier_risk or {}).items()]
    return RiskView(
        risk=record.risk,
        t_pass=record.t_pass,
        t_block=record.t_block,
        decision=record.decision,
        decision_tier=record.decision_tier,
        tiers=tiers,
        fallback_reason=record.fallback_reason,
        model_version=record.model_version,
        policy_version=record.policy_version,
    )


def _rules(item: QueueItem, engine: DecisionEngine) -> list[RuleView]:
    """The rules the decision matched (enforced, then shadow), each with what it checks under the policy
    in force (a rule removed since is named as such)."""
    by_name = {rule.name: rule for rule in engine.policy.rules}
    views = []
    for mode, names in (("enforce", item.decision.rules_matched), ("shadow", item.decision.rules_shadow)):
        for name in names:
            rule = by_name.get(name)
            checks = rule_in_words(rule) if rule is not None else "no longer in the policy in force"
            views.append(RuleView(name, rule.action if rule is not None else "", mode, checks))
    return views


def _match(reason: dict[str, Any], texts: ReviewTexts, listing: dict[str, Any]) -> MatchView:
    return MatchView(
        kind="repost" if reason["feature"] == "repost_match" else "catalogue",
        words=texts.catalogue.describe(reason, listing),
        matched_listing_id=reason.get("matched_listing_id"),
        similarity=reason.get("similarity"),
        catalogue_entry_id=reason.get("catalogue_entry_id"),
        catalogue_name=reason.get("catalogue_name"),
    )


def _similar(engine: DecisionEngine, listing: dict[str, Any]) -> list[PastCase] | None:
    """The most similar reviewed listings with their verdicts (None: the bundle ships no product index)."""
    identifier = engine.bundle.identifier if engine.bundle is not None else None
    if identifier is None:
        return None
    indexed = identifier.reviewed.listing(str(listing.get(engine.id_column, "")))
    if indexed is None:
        indexed, _ = identifier.record_listings([listing], engine.id_column)
    return identifier.similar(indexed, SIMILAR_CASES)


def _options(engine: DecisionEngine, texts: ReviewTexts) -> list[ReasonOption]:
    options = []
    for reason in texts.violation_reasons(engine.config):
        excerpt = texts.excerpts.get(reason)
        title = excerpt.title if excerpt is not None else reason.replace("_", " ").capitalize()
        options.append(
            ReasonOption(
                reason, title, excerpt.section if excerpt else None, excerpt.text if excerpt is not None else None
            )
        )
    return options
