"""The decision engine: listings -> features -> ONNX model -> calibrated risk -> policy -> decisions.

Immutable once built: a policy change or a new bundle builds a new engine and the service swaps the
reference atomically, so one request never sees half of an old policy and half of a new one.
Fail safe: whatever goes wrong while scoring, the affected listings get `human_review` with
`fallback_reason`, never an automated pass.

Hot path: no pandas per request. Features come from the listing dicts in one pass per feature over
the batch (`FeatureBuilder.transform_records`), rules are matched on the batch's text columns by
`decision.rules` (the one matcher), reasons are gathered for the whole batch at once, and routing is
always `decision.policy.route` (with every tier's risk and t_pass on a tiered bundle: the same call the
evaluation and the simulator make); only building the DecisionRecords is per item.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from bundle.load import Bundle
from decision.audit import MIN_AUDIT_RATE, draw_audits, inclusion_probabilities, pass_margin
from decision.policy import (
    AUTO_BLOCK,
    AUTO_PASS,
    CODE_REVIEW,
    DECISIONS,
    Policy,
    driving_tier,
    route,
)
from decision.rules import RuleMatches, match_rules_split
from features.builder import text_column
from features.config import DataConfig
from features.identify import PRODUCT_MATCH, Identification
from serving.explain import Explainer, PathExplainer
from serving.store.records import DecisionRecord, StatementOfReasons, new_ids, utcnow

log = logging.getLogger(__name__)

MODEL_UNAVAILABLE = "model_unavailable"
SCORING_ERROR = "scoring_error"
SCORING_TIMEOUT = "scoring_timeout"
TOP_REASONS = 3
SMALL_BATCH = 64  # below this many listings, exact TreeSHAP runs on one thread (OpenMP start-up costs more)
FAILSAFE_POLICY_VERSION = "failsafe-no-model"

# What the strongest signal behind a restrictive decision says about the kind of violation
# (EU DSA statement-of-reasons categories).
_DSA_CATEGORY_BY_FEATURE = {
    "prohibited_hits": "unsafe_and_prohibited_products",
    "luxury_brand_hits": "intellectual_property_infringements",
    "brand_is_luxury": "intellectual_property_infringements",
    "log_price_vs_category": "intellectual_property_infringements",
    "log_price_vs_brand": "intellectual_property_infringements",
    "health_claim_hits": "consumer_information_infringements",
    "regulated_without_certificate": "unsafe_and_prohibited_products",
}
_DEFAULT_DSA_CATEGORY = "scope_of_platform_service"
# ... what the shipped rules are about (`decision.thresholds.default_rules`): a re-post of a rejected
# listing says nothing of the kind of violation, nor does a rule a team wrote, so those fall through to
# the model's strongest signal (or the violation reason a reviewer gave)
_DSA_CATEGORY_BY_RULE = {
    "prohibited_term": "unsafe_and_prohibited_products",
    "catalogue_prohibited": "unsafe_and_prohibited_products",
    "regulated_category": "unsafe_and_prohibited_products",
}
# ... and what a reviewer's violation reason says (the generator's and the review tool's reasons)
_DSA_CATEGORY_BY_VIOLATION = {
    "counterfeit": "intellectual_property_infringements",
    "prohibited_item": "unsafe_and_prohibited_products",
    "misleading_health_claim": "consumer_information_infringements",
    "regulated_no_certificate": "unsafe_and_prohibited_products",
}


@dataclass(frozen=True)
class Scores:
    """Model output for a batch: calibrated risk (NaN where scoring failed) and reasons per item; on a
    tiered bundle also the calibrated risk per tier, (n, K) in the bundle's tier order (NaN rows where
    scoring failed; None for an untiered bundle or when nothing was scored)."""

    risk: np.ndarray
    reasons: list[list[dict[str, Any]]]
    fallback_reason: str | None = None
    tier_risk: np.ndarray | None = None


def failsafe_policy() -> Policy:
    """What serves without a model: no rules, and no risk can pass (every item is unscored anyway)."""
    return Policy(version=FAILSAFE_POLICY_VERSION, t_pass=0.0, t_block=1.0, qa_sample_rate=MIN_AUDIT_RATE)


@dataclass
class DecisionEngine:
    bundle: Bundle | None
    policy: Policy
    seed: int | None = None
    explainer: Explainer | None = None  # None: exact TreeSHAP from the bundle (slower)
    # without a bundle: the data config the deployment's listings follow (`contract_of`), so the fail-safe
    # engine takes the served bundle's request bodies and sends those listings to review; None: built-in
    contract: DataConfig | None = None
    _rng: np.random.Generator = field(init=False, repr=False)
    _rng_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _rule_columns: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._rule_columns = sorted({c for rule in self.policy.rules if rule.enabled for c in rule.columns})

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle | None,
        policy: Policy | None = None,
        reasons: str = "path",
        seed: int | None = None,
        contract: DataConfig | None = None,
    ) -> DecisionEngine:
        """An engine for a bundle (its own policy unless given), warmed up so the first request is fast.

        Without a bundle: the fail-safe engine, every listing to human review (`model_unavailable`), taking
        listings of the `contract` data config (the built-in marketplace's when None).
        """
        if bundle is None:
            return cls(bundle=None, policy=policy or failsafe_policy(), seed=seed, contract=contract)
        explainer: Explainer | None = None
        if bundle.linear is not None:
            explainer = bundle.linear  # a linear model's terms are its exact contributions
        elif reasons == "path":
            explainer = PathExplainer(bundle.booster)
        engine = cls(bundle=bundle, policy=policy or bundle.policy, seed=seed, explainer=explainer)
        engine.warm_up()
        return engine

    def warm_up(self) -> None:
        """Score one synthetic listing so lazy parts (booster, ONNX session, regexes) load now."""
        if self.bundle is None:
            return
        columns = self.bundle.config.listing_columns
        listing: dict[str, Any] = {c: None for c in columns}
        listing[self.bundle.config.id] = "warm-up"
        if self.bundle.config.timestamp:
            listing[self.bundle.config.timestamp] = utcnow()
        for column in self.bundle.config.text:
            listing[column] = "warm up"
        scores = self.score([listing])
        if scores.fallback_reason is not None:
            log.warning("warm-up scoring fell back to %s", scores.fallback_reason)
        self.identify([listing])  # loads the product index

    @property
    def model_version(self) -> str | None:
        return self.bundle.version if self.bundle is not None else None

    @property
    def id_column(self) -> str:
        """The listing id's field: the data config names it (`listing_id` without a bundle or contract)."""
        config = self.config
        return config.id if config is not None else "listing_id"

    @property
    def config(self) -> DataConfig | None:
        """The bundle's data config; without a bundle, the contract's (None without either)."""
        return self.bundle.config if self.bundle is not None else self.contract

    @property
    def tier_names(self) -> list[str]:
        """The bundle's violation tiers, in the order of `Scores.tier_risk`'s columns ([] if untiered)."""
        return self.bundle.tier_names if self.bundle is not None else []

    @property
    def ready(self) -> bool:
        return self.bundle is not None

    def with_policy(self, policy: Policy) -> DecisionEngine:
        return DecisionEngine(
            bundle=self.bundle, policy=policy, seed=self.seed, explainer=self.explainer, contract=self.contract
        )

    # --- scoring --------------------------------------------------------------------------------
    def score(self, listings: list[dict[str, Any]]) -> Scores:
        """Calibrated risk and top reasons; never raises: failures come back as NaN + a reason."""
        n = len(listings)
        if self.bundle is None:
            return Scores(np.full(n, np.nan), [[] for _ in range(n)], MODEL_UNAVAILABLE)
        try:
            X = self._features(listings)
            risk, tier_risk = self.bundle.score_matrix(X)
            return Scores(risk, self._reasons(X, risk), tier_risk=tier_risk)
        except Exception:
            log.exception("scoring failed for %d listings; routing them to human review", n)
            unscored = np.full((n, len(self.tier_names)), np.nan) if self.tier_names else None
            return Scores(np.full(n, np.nan), [[] for _ in range(n)], SCORING_ERROR, unscored)

    def unknown_categories(self, listings: list[dict[str, Any]]) -> list[list[tuple[str, str]]]:
        """Per listing, the (column, value) pairs of categorical values the bundle has no code for: they
        are scored as the unknown category (code 0), like values too rare in training to get a code."""
        if self.bundle is None:
            return [[] for _ in listings]
        found: list[list[tuple[str, str]]] = [[] for _ in listings]
        for column, codes in self.bundle.builder.category_codes.items():
            for i, value in enumerate(text_column(listings, column)):
                if value and value not in codes:
                    found[i].append((column, value))
        return found

    def _features(self, listings: list[dict[str, Any]]) -> np.ndarray:
        assert self.bundle is not None
        return self.bundle.builder.transform_records(listings)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the raw log-odds: path attribution, or exact TreeSHAP."""
        assert self.bundle is not None
        if self.explainer is not None:
            return self.explainer.contributions(X)
        threads = 1 if len(X) < SMALL_BATCH else 0  # OpenMP start-up costs more than a small batch
        contrib = np.asarray(self.bundle.booster.predict(X, pred_contrib=True, num_threads=threads))
        return contrib[:, :-1]

    def _reasons(self, X: np.ndarray, risk: np.ndarray) -> list[list[dict[str, Any]]]:
        """Top features pushing each listing's risk up (contributions to the log-odds), one pass per batch.

        Ties keep the lower feature index (a stable sort); only positive contributions are reasons.
        """
        assert self.bundle is not None
        contributions = self.contributions(X)
        k = min(TOP_REASONS, contributions.shape[1])
        top = np.argsort(-contributions, axis=1, kind="stable")[:, :k]  # descending: positives come first
        top_contrib = np.take_along_axis(contributions, top, axis=1)
        top_values = np.take_along_axis(np.asarray(X, dtype=np.float64), top, axis=1)
        features = np.asarray(self.bundle.feature_names, dtype=object)[top].ravel().tolist()
        values = np.where(np.isfinite(top_values), np.round(top_values, 6), np.nan).ravel().tolist()
        contribs = np.round(top_contrib, 4).ravel().tolist()
        flat = [
            {"feature": f, "value": v if v == v else None, "contribution": c}  # NaN -> None
            for f, v, c in zip(features, values, contribs, strict=True)
        ]
        return [flat[i * k : i * k + kept] for i, kept in enumerate((top_contrib > 0).sum(axis=1).tolist())]

    # --- deciding -------------------------------------------------------------------------------
    def decide(
        self,
        listings: list[dict[str, Any]],
        scores: Scores,
        request_id: str | Sequence[str | None] | None = None,
        received_at: datetime | Sequence[datetime] | None = None,
    ) -> list[DecisionRecord]:
        """Rules, then thresholds (per segment), then the audit draw: one DecisionRecord per listing.

        Shadow rules are matched in the same pass as the enforced ones and logged (`rules_shadow`);
        they never change a decision. `model_decision` is what the thresholds alone decide (no rules).

        Every decision is logged with its inclusion probability (`decision.audit`): 1 for human review,
        the audit rate of its stratum for an automated one. An automated decision drawn for audit stays
        in force (`qa_sample=True`) and is queued in the audit lane.
        `request_id` and `received_at` are one value for the whole batch, or one per listing (single
        requests scored together keep their own).
        """
        n, policy = len(listings), self.policy
        identified = self.identify(listings)  # raises -> decide_safely: human review, never a pass
        rules = self.match_all_rules(listings, identified)
        matched = rules.matched
        t_pass, t_block = self.thresholds(listings)
        tier_names = self.tier_names
        tier_pass = policy.tier_pass_vector(tier_names)
        codes = route(scores.risk, t_pass, t_block, rules.block, rules.review, scores.tier_risk, tier_pass)
        model_codes = route(scores.risk, t_pass, t_block, None, None, scores.tier_risk, tier_pass)
        margin = pass_margin(scores.risk, t_pass, scores.tier_risk, tier_pass)
        pi = inclusion_probabilities(codes, margin, policy.qa_sample_rate, policy.audit)
        with self._rng_lock:
            sampled = draw_audits(codes, pi, self._rng)
        decided_at = utcnow()
        request_ids = _per_item(request_id, n)
        received = _per_item(received_at or decided_at, n)
        scored = np.isfinite(scores.risk)
        risks = np.clip(scores.risk, 0.0, 1.0).tolist()
        fallback = scores.fallback_reason or MODEL_UNAVAILABLE
        priorities = _priorities(scores.risk, sampled, np.array([bool(m) for m in matched], dtype=bool)).tolist()
        decisions = [DECISIONS[c] for c in codes.tolist()]
        model_decisions = [DECISIONS[c] for c in model_codes.tolist()]
        automated = (codes != CODE_REVIEW).tolist()
        t_pass_list, t_block_list, pi_list = t_pass.tolist(), t_block.tolist(), pi.tolist()
        tier_risks, tiers = _tier_fields(codes, scores.tier_risk, tier_pass, tier_names, n)
        model_version, id_column = self.model_version, self.id_column
        records = []
        for i, (listing, is_scored, audited, decision_id) in enumerate(
            zip(listings, scored.tolist(), sampled.tolist(), new_ids(n), strict=True)
        ):
            record = DecisionRecord(
                listing_id=str(listing[id_column]),
                decision=decisions[i],  # type: ignore[arg-type]
                automated=automated[i],
                policy_version=policy.version,
                listing=listing,
                risk=risks[i] if is_scored else None,
                model_version=model_version,
                t_pass=t_pass_list[i],
                t_block=t_block_list[i],
                priority=priorities[i],
                rules_matched=matched[i],
                rules_shadow=rules.shadow[i],
                model_decision=model_decisions[i] if is_scored else None,  # type: ignore[arg-type]
                reasons=scores.reasons[i] + identified[i].reasons() if identified else scores.reasons[i],
                qa_sample=audited,
                fallback_reason=None if is_scored else fallback,
                tier_risk=tier_risks[i] if is_scored else None,
                decision_tier=tiers[i] if is_scored else None,
                request_id=request_ids[i],
                decision_id=decision_id,
                received_at=received[i],
                decided_at=decided_at,
                inclusion_prob=pi_list[i],
            )
            if record.decision == AUTO_BLOCK:
                record.statement_of_reasons = statement_of_reasons(record)
            records.append(record)
        return records

    def decide_safely(
        self,
        listings: list[dict[str, Any]],
        scores: Scores,
        request_id: str | Sequence[str | None] | None = None,
        received_at: datetime | Sequence[datetime] | None = None,
    ) -> list[DecisionRecord]:
        """`decide`, and if even that fails (a broken rule, odd input), every listing to human review."""
        try:
            return self.decide(listings, scores, request_id, received_at)
        except Exception:
            log.exception("deciding failed for %d listings; routing them to human review", len(listings))
            request_ids = _per_item(request_id, len(listings))
            received = _per_item(received_at or utcnow(), len(listings))
            return [
                DecisionRecord(
                    listing_id=str(listing.get(self.id_column) or "unknown"),
                    decision="human_review",
                    automated=False,
                    policy_version=self.policy.version,
                    listing=listing,
                    model_version=self.model_version,
                    priority=1.0,
                    fallback_reason=SCORING_ERROR,
                    request_id=rid,
                    received_at=at,
                    inclusion_prob=1.0,
                )
                for listing, rid, at in zip(listings, request_ids, received, strict=True)
            ]

    def match_rules(
        self, listings: list[dict[str, Any]], identified: list[Identification] | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """(block_mask, review_mask, matched rule names) of the rules that act: `decision.rules.match_rules`
        on listing dicts, with product identification's `product_match` column."""
        matches = self.match_all_rules(listings, identified)
        return matches.block, matches.review, matches.matched

    def match_all_rules(
        self, listings: list[dict[str, Any]], identified: list[Identification] | None = None
    ) -> RuleMatches:
        """The enforced and the shadow rules' hits, in one pass of the matcher (`match_rules_split`)."""
        texts = {c: text_column(listings, c) for c in self._rule_columns if c != PRODUCT_MATCH}
        if PRODUCT_MATCH in self._rule_columns:
            texts[PRODUCT_MATCH] = [found.product_match for found in identified or ()] or [""] * len(listings)
        return match_rules_split(texts, len(listings), self.policy.rules)

    def identify(self, listings: list[dict[str, Any]]) -> list[Identification]:
        """Product identification of each listing ([] when the bundle ships no index)."""
        identifier = self.bundle.identifier if self.bundle is not None else None
        return identifier.identify_records(listings, self.id_column) if identifier is not None and listings else []

    def thresholds(self, listings: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Per-listing (t_pass, t_block): the segment's pair, else the global pair."""
        policy, n = self.policy, len(listings)
        column = policy.segment_by
        if column and listings and any(column in listing for listing in listings):
            values = np.array([str(listing.get(column)) for listing in listings], dtype=object)
            return policy.thresholds_for(values)
        return np.full(n, policy.t_pass), np.full(n, policy.t_block)


def _tier_fields(
    codes: np.ndarray, tier_risk: np.ndarray | None, tier_pass: np.ndarray | None, tier_names: list[str], n: int
) -> tuple[list[dict[str, float] | None], list[str | None]]:
    """Per listing, its {tier: risk} (None where a tier risk is missing) and the name of the tier behind
    its decision (`decision.policy.driving_tier`; None for a pass, an unscored listing or no tiers; the
    highest tier risk when the policy sets no tier thresholds)."""
    if tier_risk is None or not tier_names:
        return [None] * n, [None] * n
    tier_risk = np.asarray(tier_risk, dtype=np.float64)
    complete = np.isfinite(tier_risk).all(axis=1).tolist()
    rows = np.clip(tier_risk, 0.0, 1.0).tolist()
    risks = [dict(zip(tier_names, row, strict=True)) if ok else None for row, ok in zip(rows, complete, strict=True)]
    names = [*tier_names, None]  # index -1 (no tier) -> None
    if tier_pass is None:  # a policy without tier thresholds: the likeliest tier still names a block's type
        tier_pass = np.ones(len(tier_names))
    driver = driving_tier(codes, tier_risk, tier_pass).tolist()
    return risks, [names[k] if ok else None for k, ok in zip(driver, complete, strict=True)]


def fallback_scores(n: int, reason: str) -> Scores:
    return Scores(np.full(n, np.nan), [[] for _ in range(n)], reason)


def _priorities(risk: np.ndarray, audited: np.ndarray, rule_hit: np.ndarray) -> np.ndarray:
    """Queue order: likely violations first; unscored items high (nothing screened them). Audits review
    decisions already in force, so they rank below the reviews that hold a listing (a tenth of their
    risk) until the audit age limit, past which the queue claims them first (`ReviewQueue.claim`)."""
    risk = np.asarray(risk, dtype=np.float64)
    priority = np.where(rule_hit, np.maximum(risk, 0.9), risk)
    priority = np.where(audited, 0.1 * risk, priority)
    return np.where(np.isfinite(risk), priority, 1.0)


def _per_item(value: Any, n: int) -> list[Any]:
    """One value per listing: a sequence as given (checked), or a single value repeated."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"expected {n} values, got {len(value)}")
        return list(value)
    return [value] * n


def verdict_statement(record: DecisionRecord, verdict: str, violation_reason: str | None) -> dict[str, Any] | None:
    """The statement of reasons a verdict on a queued decision needs (None: the verdict restricts nothing
    and lifts nothing): a rejection restricts the listing (after review, or on an audit that overturns an
    auto-pass: `review_statement_of_reasons`); an audit approving an auto-block lifts the block
    (`lifted_block_statement`)."""
    if verdict == "reject":
        return review_statement_of_reasons(record, violation_reason)
    if record.lane == "audit" and record.decision == AUTO_BLOCK:
        return lifted_block_statement(record)
    return None


def correction_statement(
    record: DecisionRecord,
    previous_verdict: str,
    previous_statement: dict[str, Any] | None,
    verdict: str,
    violation_reason: str | None,
) -> dict[str, Any] | None:
    """The statement of reasons of a corrected verdict (None: it restricts nothing and lifts nothing).

    Amended to reject: the listing is restricted by a person (`review_statement_of_reasons`, noting the
    amendment). A rejection amended to approve lifts that restriction, as an overturned block does: the
    statement of the rejection it reverses, with restriction 'restriction_lifted'. An approval amended
    to approve cannot happen (the store refuses an amendment that changes nothing).
    """
    if verdict == "reject":
        statement = review_statement_of_reasons(record, violation_reason)
        was = "approved" if previous_verdict == "approve" else "rejected for another reason"
        statement["facts_and_circumstances"] = f"verdict amended: {was}, now {statement['facts_and_circumstances']}"
        return statement
    if previous_verdict != "reject":
        return None
    statement = dict(previous_statement or review_statement_of_reasons(record, None))
    statement.update(
        automated_decision=False,
        restriction="restriction_lifted",
        facts_and_circumstances=(
            "the rejection was amended to approve on correction: the restriction is lifted and the listing may go "
            f"live; the rejection was based on: {statement.get('facts_and_circumstances', '')}"
        ),
    )
    return statement


def review_statement_of_reasons(record: DecisionRecord, violation_reason: str | None) -> dict[str, Any]:
    """DSA statement of reasons for a listing a person rejected after review (automated_decision=False).

    Detection was automated (the system queued the listing); the decision was a reviewer's. On an audit
    of an auto-pass the statement says the listing was live and is now taken down.
    """
    statement = statement_of_reasons(record, automated_decision=False)
    if violation_reason:
        statement["category"] = _DSA_CATEGORY_BY_VIOLATION.get(violation_reason, statement["category"])
    signals = ", ".join(r["feature"] for r in record.reasons) or "none"
    risk = f"model risk {record.risk:.3f}; " if record.risk is not None else "not scored by the model; "
    rules = f"rules matched: {', '.join(record.rules_matched)}; " if record.rules_matched else ""
    how = "rejected by a reviewer"
    if record.lane == "audit" and record.decision == AUTO_PASS:
        how = "auto-passed, then rejected by a reviewer on audit (the auto-pass is overturned)"
    statement["facts_and_circumstances"] = (
        f"{how} ({violation_reason or 'no reason given'}); {rules}{risk}top signals: {signals}"
    )
    return statement


def lifted_block_statement(record: DecisionRecord) -> dict[str, Any]:
    """Statement that an automated block is lifted: a reviewer auditing it approved the listing.

    The block's own statement stays in the decision log; this one (automated_decision=False,
    restriction 'restriction_lifted') records the reversal with the grounds of the block it reverses.
    """
    statement = dict(record.statement_of_reasons or statement_of_reasons(record))
    blocked_for = statement.get("facts_and_circumstances", "")
    statement.update(
        automated_decision=False,
        restriction="restriction_lifted",
        facts_and_circumstances=(
            "auto-blocked, then approved by a reviewer on audit: the block is lifted and the listing may go "
            f"live (the auto-block is overturned); the block was based on: {blocked_for}"
        ),
    )
    return statement


def _likeliest_tier(record: DecisionRecord) -> str:
    """The statement's words for the violation tier behind a block (empty without tiers)."""
    if record.decision_tier is None or not record.tier_risk:
        return ""
    return (
        f"likeliest violation type: {record.decision_tier} (tier risk {record.tier_risk[record.decision_tier]:.3f}); "
    )


def in_words(value: float | None) -> str:
    """A risk or threshold in words: three decimals, or three significant digits below 0.01, so that a
    risk and a threshold both under 0.0005 do not both read 0.000; just under 1, enough digits to tell
    it from 1."""
    if value is None:
        return "none"
    if not math.isfinite(value) or value == 0:
        return f"{value:.3f}"
    if 0.999 < value < 1:  # 0.9999995 beside a threshold of 1.000: as many nines as it has, then one digit
        return f"{value:.{min(15, 1 - math.floor(math.log10(1 - value)))}f}"
    if abs(value) >= 0.01:
        return f"{value:.3f}"
    return np.format_float_positional(value, precision=3, fractional=False, trim="-")


def in_words_apart(value: float | None, other: float | None) -> tuple[str, str]:
    """Two numbers compared in one sentence (a risk and its threshold), each `in_words`, with more
    significant digits where those would read the same for different values ("risk 0.000441 lies between
    the pass threshold 0.000441 and ..." said 0.0004412 against 0.0004408)."""
    shown = in_words(value), in_words(other)
    if value is None or other is None or value == other or shown[0] != shown[1]:
        return shown
    for digits in range(4, 18):
        shown = (_significant(value, digits), _significant(other, digits))
        if shown[0] != shown[1]:
            break
    return shown


def _significant(value: float, digits: int) -> str:
    return np.format_float_positional(value, precision=digits, fractional=False, trim="-")


def _model_fact(record: DecisionRecord) -> str:
    """The model's part of the facts, true as stated: its risk reached the block threshold, or (a block a
    rule or a reviewer made) it did not."""
    if record.risk is None or record.t_block is None:
        return ""
    if record.risk >= record.t_block:
        return f"model risk {in_words(record.risk)} >= block threshold {in_words(record.t_block)}; "
    return f"model risk {in_words(record.risk)}, below the block threshold {in_words(record.t_block)}; "


def statement_of_reasons(record: DecisionRecord, automated_decision: bool = True) -> dict[str, Any]:
    """EU DSA statement of reasons for a restrictive decision (auto-block or review-then-block)."""
    by_rule = [_DSA_CATEGORY_BY_RULE[name] for name in record.rules_matched if name in _DSA_CATEGORY_BY_RULE]
    category = _DEFAULT_DSA_CATEGORY
    if by_rule:
        category = by_rule[0]
    elif record.reasons:
        category = _DSA_CATEGORY_BY_FEATURE.get(record.reasons[0]["feature"], _DEFAULT_DSA_CATEGORY)
    facts = (
        (f"rules matched: {', '.join(record.rules_matched)}; " if record.rules_matched else "")
        + _model_fact(record)
        + _likeliest_tier(record)
        + "top signals: "
        + (", ".join(r["feature"] for r in record.reasons) or "none")
    )
    return StatementOfReasons(
        puid=record.decision_id,
        decision_ground="incompatible_with_terms",
        category=category,
        facts_and_circumstances=facts,
        automated_detection=True,
        automated_decision=automated_decision,
        ground_reference=f"listing policy {record.policy_version}",
    ).to_dict()
