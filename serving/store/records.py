"""What the store reads and writes: decisions, queue items, reviews, keys, policy changes; and its errors."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

Decision = Literal["auto_pass", "auto_block", "human_review"]
Verdict = Literal["approve", "reject"]
QueueStatus = Literal["pending", "claimed", "done"]
Scope = Literal["score", "review", "read", "admin", "audit", "supervise"]
Lane = Literal["review", "audit", "second"]
DecisionGround = Literal["illegal_content", "incompatible_with_terms"]

DECISIONS: frozenset[str] = frozenset(get_args(Decision))
VERDICTS: frozenset[str] = frozenset(get_args(Verdict))
SCOPES: frozenset[str] = frozenset(get_args(Scope))
LANES: tuple[Lane, ...] = get_args(Lane)


class StoreError(RuntimeError):
    """Base class of the errors the store raises on purpose."""


class NotFoundError(StoreError, KeyError):
    """No such decision (or key)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not found"


class ConflictError(StoreError):
    """The request conflicts with the stored state: already reviewed, leased to someone else..."""


class StoreClosedError(StoreError):
    """The store was closed; no more writes are accepted."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return new_ids(1)[0]


def new_ids(n: int) -> list[str]:
    """n unique decision ids: time-ordered UUIDs (version 7: 48-bit Unix milliseconds, 74 random bits).

    Time order keeps the decision log's primary-key index append-only; random (version 4) ids scatter
    every insert over the whole index and doubled the bytes each commit writes and fsyncs.
    """
    millis = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    entropy = os.urandom(10 * n)
    ids = []
    for i in range(n):
        raw = bytearray(millis + entropy[10 * i : 10 * i + 10])
        raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")  # str(uuid.UUID(bytes=raw))
    return ids


@dataclass(frozen=True, slots=True)
class StatementOfReasons:
    """EU DSA (art. 17) statement of reasons for a restrictive decision; stored as JSON with the decision."""

    puid: str  # the platform's unique id of the decision: the decision_id
    decision_ground: DecisionGround
    category: str
    facts_and_circumstances: str
    automated_detection: bool
    automated_decision: bool
    ground_reference: str | None = None  # the law or the terms-of-service clause relied on
    restriction: str = "listing_removed"
    redress: tuple[str, ...] = ("internal_complaint_handling", "out_of_court_settlement", "judicial_redress")

    def to_dict(self) -> dict[str, Any]:
        return {
            "puid": self.puid,
            "decision_ground": self.decision_ground,
            "category": self.category,
            "facts_and_circumstances": self.facts_and_circumstances,
            "automated_detection": self.automated_detection,
            "automated_decision": self.automated_decision,
            "ground_reference": self.ground_reference,
            "restriction": self.restriction,
            "redress": list(self.redress),
        }


@dataclass(slots=True)
class DecisionRecord:
    """One routing decision as logged: everything needed to explain and audit it later.

    `human_review` decisions are put on the review queue's review lane with `priority` (higher is
    reviewed first). An automated decision drawn for audit (`qa_sample=True`) stays in force and is put
    on the audit lane. `inclusion_prob` is the chance this decision gets a verdict: 1 for human review,
    the audit probability for an automated decision (None only on rows logged before it was kept).
    Decisions logged before audits existed sent QA samples to review as `human_review`, with the
    decision they would have had in `would_have_been`. `request_id` makes retries idempotent per (API
    key, listing).
    """

    listing_id: str
    decision: Decision
    automated: bool
    policy_version: str
    listing: dict[str, Any]
    risk: float | None = None
    model_version: str | None = None
    t_pass: float | None = None
    t_block: float | None = None
    priority: float = 0.0
    rules_matched: list[str] = field(default_factory=list)
    reasons: list[Any] = field(default_factory=list)
    qa_sample: bool = False
    would_have_been: Decision | None = None
    fallback_reason: str | None = None
    statement_of_reasons: dict[str, Any] | None = None
    request_id: str | None = None
    decision_id: str = field(default_factory=new_id)
    received_at: datetime = field(default_factory=utcnow)
    decided_at: datetime = field(default_factory=utcnow)
    key_id: str = ""  # the API key that asked ("" when logged without one): request ids are per key
    request_hash: str | None = None  # of the request body, to tell a retry from a reused request_id
    # tiered bundles: calibrated risk per violation tier ({tier: risk}; None when untiered or unscored),
    # and the tier behind the decision (the likeliest violation type of a block, the tier furthest above
    # its t_pass of a review; None for a pass or without tiers)
    tier_risk: dict[str, float] | None = None
    decision_tier: str | None = None
    inclusion_prob: float | None = None
    # the enabled shadow rules this listing matched (logged, never acted on), and what the thresholds alone
    # would decide without any rule (None when unscored, and on rows logged before either was kept)
    rules_shadow: list[str] = field(default_factory=list)
    model_decision: Decision | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {sorted(DECISIONS)}, got {self.decision!r}")
        if self.model_decision is not None and self.model_decision not in DECISIONS:
            raise ValueError(f"model_decision must be one of {sorted(DECISIONS)} or None, got {self.model_decision!r}")
        if self.would_have_been is not None and self.would_have_been not in DECISIONS:
            raise ValueError(
                f"would_have_been must be one of {sorted(DECISIONS)} or None, got {self.would_have_been!r}"
            )
        if self.risk is not None and not (math.isfinite(self.risk) and 0.0 <= self.risk <= 1.0):
            raise ValueError(f"risk must be a probability in [0, 1] or None, got {self.risk!r}")
        if self.tier_risk is not None and not all(
            isinstance(r, (int, float)) and 0.0 <= r <= 1.0 for r in self.tier_risk.values()
        ):  # NaN fails the comparison too
            raise ValueError(f"tier_risk must map tiers to probabilities in [0, 1], got {self.tier_risk!r}")
        if not math.isfinite(self.priority):
            raise ValueError("priority must be finite")
        if self.inclusion_prob is not None and not 0.0 < self.inclusion_prob <= 1.0:  # NaN fails too
            raise ValueError(f"inclusion_prob must be in (0, 1] or None, got {self.inclusion_prob!r}")
        if not self.listing_id:
            raise ValueError("listing_id must not be empty")

    @property
    def queued(self) -> bool:
        """Whether this decision goes to the human review queue."""
        return self.decision == "human_review" or self.qa_sample

    @property
    def lane(self) -> Lane:
        """The queue lane: 'audit' for an automated decision in force drawn for audit, else 'review'."""
        return "audit" if self.qa_sample and self.decision != "human_review" else "review"


def overturns(decision: str, verdict: str) -> bool:
    """Whether a verdict contradicts an automated decision in force: a rejected auto-pass or an approved
    auto-block."""
    return (decision, verdict) in {("auto_pass", "reject"), ("auto_block", "approve")}


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A review-queue entry with the decision (listing, reasons) the reviewer needs.

    `lane` 'audit': a review of an automated decision in force; once older than the policy's audit age
    limit it is claimed before any other item. 'second': a blind second review of an item whose first
    verdict (by `first_reviewer`, never handed this item again) is in force."""

    decision_id: str
    priority: float
    enqueued_at: datetime
    status: QueueStatus
    claimed_by: str | None
    lease_expires_at: datetime | None
    qa_sample: bool
    decision: DecisionRecord
    lane: Lane = "review"
    first_reviewer: str | None = None
    second_review_rate: float | None = None  # the rate of the second-review draw at the first verdict


@dataclass(frozen=True, slots=True)
class Review:
    """A reviewer's verdict on a queued decision: a labelled outcome for retraining."""

    decision_id: str
    reviewer: str
    verdict: Verdict
    violation_reason: str | None
    review_seconds: float | None
    reviewed_at: datetime
    statement_of_reasons: dict[str, Any] | None = None  # DSA statement when the verdict restricts the listing
    # audits only: whether the verdict contradicts the automated decision in force (None: a review)
    overturn: bool | None = None
    note: str | None = None  # the reviewer's free-text note (the review console's optional field)


@dataclass(frozen=True, slots=True)
class Correction:
    """An amendment of a verdict: who changed it, when and why, from what to what. The `reviews` row keeps
    the first verdict; the latest correction is the verdict in force."""

    id: int
    decision_id: str
    corrected_by: str
    corrected_at: datetime
    previous_verdict: Verdict
    previous_violation_reason: str | None
    verdict: Verdict
    violation_reason: str | None
    reason: str
    note: str | None = None
    statement_of_reasons: dict[str, Any] | None = None  # the new verdict's: a restriction, or its lifting
    overturn: bool | None = None  # audits only: whether the new verdict contradicts the decision in force


@dataclass(frozen=True, slots=True)
class VerdictInForce:
    """A decision's verdict as it stands: the review, or its latest correction (`correction_id`)."""

    decision_id: str
    reviewer: str  # who gave the first verdict (the `reviews` row)
    verdict: Verdict
    violation_reason: str | None
    statement_of_reasons: dict[str, Any] | None
    correction_id: int | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key, without its secret."""

    key_id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked: bool
    team: str | None = None  # the reviewers' team (e.g. a vendor), for reviewer quality per team

    def allows(self, scope: str) -> bool:
        """`admin` implies every scope; a revoked key allows nothing. `read` (PMs) reads the policy,
        simulates and monitors, and changes nothing; `audit` (compliance) reads every decision with its
        listing, verdicts and reviewers; `supervise` (review leads) corrects verdicts, manages gold items
        and reads reviewer quality."""
        return not self.revoked and (scope in self.scopes or "admin" in self.scopes)


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """One audited policy change (thresholds, rules)."""

    id: int
    at: datetime
    actor: str
    old_version: str | None
    new_version: str | None
    old: dict[str, Any]
    new: dict[str, Any]
    reason: str | None = None
