"""Request and response bodies. Bounds follow the data contract, so bad input is a 422 naming the field.

The scoring bodies are built from the serving bundle's data config (`request_bodies`): the API takes the
columns the model was trained on, under their names.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from annotated_types import MaxLen
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

from decision.audit import MIN_AUDIT_RATE
from features.config import DataConfig
from serving.store import DecisionRecord

Decision = Literal["auto_pass", "auto_block", "human_review"]
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_CLOCK_SKEW = timedelta(minutes=5)


def _plausible_time(value: datetime) -> datetime:
    """Aware UTC (naive means UTC), not before 2000 and not in the future beyond clock skew."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value < _EARLIEST:
        raise ValueError("must not be before 2000-01-01")
    if value > datetime.now(UTC) + _CLOCK_SKEW:
        raise ValueError("must not be in the future")
    return value


Id = Annotated[str, Field(min_length=1, max_length=128)]
RequestId = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Idempotency key, per API key: a retry (same body) with the same request_id gets the stored "
        "decision back; the same request_id with a different body is refused with 409.",
    ),
]
Timestamp = Annotated[datetime, AfterValidator(_plausible_time)]
MAX_TEXT_CHARS = 10_000  # the most characters of any text field of a listing without a bound of its own
_LISTING_CONFIG = ConfigDict(extra="forbid", str_max_length=MAX_TEXT_CHARS, allow_inf_nan=False)

# The built-in marketplace columns keep their own bounds; any other column gets its role's (below).
_MARKETPLACE_FIELDS: dict[str, tuple[Any, Any]] = {
    "title": (str, Field(max_length=500, description="Listing title.", examples=["Leather wallet, brown"])),
    "description": (str, Field(default="", max_length=10_000, description="Listing description.")),
    "brand": (str, Field(default="", max_length=200, description="Brand as the merchant wrote it.")),
    "category": (str, Field(max_length=200, description="Marketplace category.", examples=["fashion"])),
    "market": (str, Field(max_length=64, description="Market (country or site).", examples=["DE"])),
    # missing (null or left out) scores as a missing price, as it trains: the model has seen listings without one
    "price": (
        float | None,
        Field(default=None, ge=0, le=1e9, allow_inf_nan=False, description="Price (null: not given).", examples=[29.9]),
    ),
    "merchant_tenure_days": (
        float | None,
        Field(default=None, ge=0, le=100_000, allow_inf_nan=False, description="Days since the merchant joined."),
    ),
    "image_count": (int, Field(default=0, ge=0, le=1_000, description="Number of images.")),
    "has_certificate": (int, Field(default=0, ge=0, le=1, description="1 if a certificate is attached.")),
}


def _role_field(role: str, column: str, main_text: bool) -> tuple[Any, Any]:
    """The request field of a data-config column with no marketplace bounds of its own (the first text
    column, the listing's main text like the marketplace's title, is required; other text defaults to "")."""
    described = f"The `{role}` column `{column}` of the bundle's data config."
    if role == "text":
        default: Any = ... if main_text else ""
        return str, Field(default, max_length=10_000, description=described, examples=["some text"])
    if role == "categorical":
        return str, Field(max_length=200, description=described, examples=["a value seen in training"])
    number = Field(default=None, ge=-1e12, le=1e12, allow_inf_nan=False, description=described, examples=[1.0])
    return float | None, number


def _listing_fields(config: DataConfig) -> dict[str, tuple[Any, Any]]:
    """The listing fields of a data config, by role: id, merchant, timestamp, text, categorical, numeric."""
    fields: dict[str, tuple[Any, Any]] = {
        config.id: (Id, Field(description="Listing id (the data config's `id` column).", examples=["L-1"]))
    }
    if config.merchant:
        fields[config.merchant] = (Id, Field(description="Merchant id (`merchant` column).", examples=["M00001"]))
    if config.timestamp:
        fields[config.timestamp] = (
            Timestamp,
            Field(default_factory=lambda: datetime.now(UTC), description="When the listing was created (default: now)"),
        )
    for role, columns in (("text", config.text), ("categorical", config.categorical), ("numeric", config.numeric)):
        for column in columns:
            if column not in fields:
                main_text = role == "text" and column == config.text[0]
                fields[column] = _MARKETPLACE_FIELDS.get(column) or _role_field(role, column, main_text)
    return fields


@dataclass(frozen=True)
class RequestBodies:
    """The scoring request bodies of one data config: what the bundle was trained on."""

    listing: type[BaseModel]
    score: type[BaseModel]
    batch: type[BaseModel]
    # field name -> column, for the columns pydantic cannot take as field names (`_field_name`)
    columns: dict[str, str] = dataclass_field(default_factory=dict)

    def fields(self, parsed: BaseModel) -> dict[str, Any]:
        """A parsed listing's validated fields under their column names (its `__dict__`: no
        model_dump walk)."""
        values = dict(parsed.__dict__)
        if not self.columns:
            return values
        return {self.columns.get(name, name): value for name, value in values.items()}


def _field_name(column: str, taken: set[str]) -> str:
    """The pydantic field name of a column: the column itself, unless pydantic would take it for
    something else (a leading underscore is private, as in a MongoDB `_id`; `model_config` is the model's
    configuration; `json`, `copy`, ... shadow BaseModel's methods). Then a free name; the request still
    carries the column's name (the field's alias)."""
    if not column.startswith("_") and not hasattr(BaseModel, column):
        return column
    n = 0
    while f"column_{n}" in taken:
        n += 1
    return f"column_{n}"


def _aliased(
    fields: dict[str, tuple[Any, Any]],
) -> tuple[dict[str, tuple[Any, Any]], dict[str, str]]:
    """Listing fields keyed by pydantic field names, and field name -> column for those renamed."""
    named: dict[str, tuple[Any, Any]] = {}
    columns: dict[str, str] = {}
    taken = set(fields)
    for column, (kind, info) in fields.items():
        name = _field_name(column, taken)
        taken.add(name)
        if name == column:
            named[name] = (kind, info)
        else:  # the column's bounds and default, under the column's name in requests and errors
            named[name] = (Annotated[kind, info], Field(alias=column))
            columns[name] = column
    return named, columns


def text_limits(config: DataConfig) -> dict[str, int]:
    """The most characters a scoring request takes in each text field of the config's listings (text,
    categorical and id columns: the field's own bound, else the listing-wide one), under column names:
    a rule's term longer than every field it searches can never match (`decision.rules.check_matchable`)."""
    limits: dict[str, int] = {}
    for name, info in request_bodies(config).listing.model_fields.items():
        if info.annotation is str:
            bounds = [m.max_length for m in info.metadata if isinstance(m, MaxLen)]
            limits[info.alias or name] = min(bounds, default=MAX_TEXT_CHARS)
    return limits


MAX_BATCH_ITEMS = 100_000  # the most any deployment may allow (`Settings.max_batch_items` is at most this)


@functools.cache
def request_bodies(config: DataConfig, max_batch_items: int = MAX_BATCH_ITEMS) -> RequestBodies:
    """Listing, ScoreRequest and BatchRequest built from the config's column roles (once per config and
    batch limit): the batch body declares, and refuses past, the deployment's `max_batch_items`."""
    fields, columns = _aliased(_listing_fields(config))
    listing = create_model(
        "Listing",
        __config__=_LISTING_CONFIG,
        __doc__="One listing to score: the columns of the data config the bundle was trained with.",
        **fields,  # type: ignore[call-overload]
    )
    score = create_model(
        "ScoreRequest",
        __base__=listing,
        __doc__="A listing plus an optional idempotency key.",
        request_id=(RequestId, None),
    )
    batch = create_model(
        "BatchRequest",
        __config__=ConfigDict(extra="forbid"),
        items=(list[listing], Field(min_length=1, max_length=max_batch_items)),  # type: ignore[valid-type]
        request_id=(RequestId, None),
    )
    return RequestBodies(listing, score, batch, columns)


class Reason(BaseModel):
    """A model feature's contribution, or a product match (`features.identify`): the matched listing
    and its similarity, or the catalogue entry."""

    feature: str
    value: float | None = None
    contribution: float | None = None
    matched_listing_id: str | None = None
    similarity: float | None = None
    catalogue_entry_id: str | None = None
    catalogue_name: str | None = None


class ScoredItem(BaseModel):
    """One routing decision, as logged."""

    decision_id: str
    listing_id: str
    decision: Decision
    automated: bool
    risk: float | None = Field(description="Calibrated probability of rejection; null if not scored.")
    priority: float
    reasons: list[Reason]
    rules_matched: list[str]
    qa_sample: bool = Field(
        description="Drawn for audit: the decision stays in force and a person reviews it in the audit lane."
    )
    would_have_been: Decision | None = Field(
        description="Only on decisions logged before audits stayed in force: the decision a QA sample "
        "sent to review would have had."
    )
    fallback_reason: str | None
    model_version: str | None
    policy_version: str
    t_pass: float | None
    t_block: float | None
    request_id: str | None
    statement_of_reasons: dict[str, Any] | None
    tier_risk: dict[str, float] | None = Field(
        default=None,
        description="Calibrated probability of a violation of each tier (e.g. severe, minor) on a tiered model; "
        "null for an untiered model or an unscored listing. A listing auto-passes only when every tier's risk "
        "is below that tier's t_pass.",
        examples=[{"severe": 0.004, "minor": 0.02}],
    )
    decision_tier: str | None = Field(
        default=None,
        description="The tier behind the decision: for auto_block the likeliest violation type, for "
        "human_review the tier furthest above its t_pass; null for auto_pass, unscored or untiered.",
        examples=["severe"],
    )
    inclusion_prob: float | None = Field(
        default=None,
        description="Probability that this decision gets a person's verdict: 1 for human_review, the audit "
        "probability of an automated decision (stratified by decision and risk band, never zero); null only "
        "on decisions logged before it was kept.",
        examples=[0.02],
    )
    rules_shadow: list[str] = Field(
        default_factory=list,
        description="Shadow rules this listing matched: logged to measure them, they never change the decision.",
    )
    model_decision: Decision | None = Field(
        default=None,
        description="What the model's thresholds alone would decide, without any rule; null if not scored.",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="What the caller should know about how the listing was scored, e.g. a category the "
        "model was not trained on (accepted, scored as unknown).",
    )


class BatchResponse(BaseModel):
    items: list[ScoredItem]


def scored_item(record: DecisionRecord, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """A logged decision as the API returns it (plain dict: serialised straight to JSON)."""
    return {
        "decision_id": record.decision_id,
        "listing_id": record.listing_id,
        "decision": record.decision,
        "automated": record.automated,
        "risk": record.risk,
        "priority": record.priority,
        "reasons": record.reasons,
        "rules_matched": record.rules_matched,
        "qa_sample": record.qa_sample,
        "would_have_been": record.would_have_been,
        "fallback_reason": record.fallback_reason,
        "model_version": record.model_version,
        "policy_version": record.policy_version,
        "t_pass": record.t_pass,
        "t_block": record.t_block,
        "request_id": record.request_id,
        "statement_of_reasons": record.statement_of_reasons,
        "tier_risk": record.tier_risk,
        "decision_tier": record.decision_tier,
        "inclusion_prob": record.inclusion_prob,
        "rules_shadow": record.rules_shadow,
        "model_decision": record.model_decision,
        "warnings": list(warnings),
    }


def unknown_category_warnings(unknown: list[tuple[str, str]]) -> list[str]:
    """The `warnings` of an item whose categorical values (column, value) the model has no code for."""
    return [f"{column} {value!r} was not seen in training; scored as unknown" for column, value in unknown]


# --- review queue -----------------------------------------------------------------------------------


class QueuedItem(BaseModel):
    decision_id: str
    priority: float
    qa_sample: bool
    lane: Literal["review", "audit", "second"] = Field(
        description="review: a decision waiting for a person; audit: an automated decision in force, drawn "
        "for audit (claimed first once older than the policy's audit.max_age_hours); second: a blind second "
        "review of a verdict in force (never handed to its first reviewer)."
    )
    enqueued_at: datetime
    lease_expires_at: datetime | None
    claimed_by: str | None
    listing: dict[str, Any]
    decision: ScoredItem


class QueueResponse(BaseModel):
    items: list[QueuedItem]


class QueueCounts(BaseModel):
    pending: int
    claimed: int
    done: int
    oldest_pending_age_seconds: float | None = Field(
        default=None, description="Age of the oldest item waiting to be claimed (null: none waits)."
    )


class QueueStats(QueueCounts):
    lanes: dict[Literal["review", "audit", "second"], QueueCounts] = Field(description="The same counts per lane.")


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    verdict: Literal["approve", "reject"]
    violation_reason: str | None = Field(
        default=None, min_length=1, max_length=256, description="Required for a reject (see POST /v1/reviews)."
    )
    review_seconds: float | None = Field(default=None, ge=0, le=86_400)
    note: str | None = Field(default=None, max_length=2_000, description="The reviewer's note, kept with the verdict.")


class ReviewResponse(BaseModel):
    decision_id: str
    reviewer: str
    verdict: Literal["approve", "reject"]
    violation_reason: str | None
    review_seconds: float | None
    reviewed_at: datetime
    statement_of_reasons: dict[str, Any] | None
    overturn: bool | None = Field(
        default=None,
        description="On an audit: true when the verdict contradicts the automated decision in force (a "
        "rejected auto-pass, an approved auto-block); null for a review.",
    )
    note: str | None = None


class CorrectionRequest(BaseModel):
    """An amended verdict. `violation_reason` is required when the new verdict is reject, refused on approve."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["approve", "reject"]
    violation_reason: str | None = Field(default=None, min_length=1, max_length=256)
    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=3, max_length=2_000),
        Field(description="Why the verdict is amended: kept in the decision's audit trail."),
    ]
    note: str | None = Field(default=None, max_length=2_000, description="Anything else the audit trail should keep.")


class CorrectionResponse(BaseModel):
    id: int
    decision_id: str
    corrected_by: str
    corrected_at: datetime
    previous_verdict: Literal["approve", "reject"]
    previous_violation_reason: str | None
    verdict: Literal["approve", "reject"]
    violation_reason: str | None
    reason: str
    note: str | None
    statement_of_reasons: dict[str, Any] | None = Field(
        description="The new verdict's DSA statement: a restriction (amended to reject), or the lifting of the "
        "restriction the amended rejection imposed; null when the amendment restricts and lifts nothing."
    )
    overturn: bool | None = Field(
        description="On an audit: whether the new verdict contradicts the automated decision in force; null for "
        "a review."
    )


# --- decision audit ---------------------------------------------------------------------------------


class Thresholds(BaseModel):
    t_pass: float | None
    t_block: float | None


class PolicyInForce(BaseModel):
    version: str
    source: Literal["api", "bundle", "failsafe"] = Field(
        description="api: put in force through the policy API (stored with who, when and why); bundle: the "
        "bundle's own policy.json; failsafe: no model was loaded."
    )
    put_in_force_at: datetime | None
    put_in_force_by: str | None
    change_reason: str | None
    guarantee_state: str | None = Field(description="certified, provisional, hand_set or none (api policies only).")
    policy: dict[str, Any] | None = Field(description="The stored policy (thresholds, rules, audit plan).")
    note: str


class RuleInForceOut(BaseModel):
    name: str
    action: str | None = Field(description="block or review; null under the bundle's own policy (not stored).")
    mode: str | None
    version: int | None = Field(description="The rule's own version (bumped on every change of it).")
    in_force_since: str | None = Field(
        description="The earliest policy version of the unbroken run up to the decision's in which the rule acted "
        "alike; null under the bundle's own policy."
    )


class QueueEntryOut(BaseModel):
    lane: str
    status: str
    enqueued_at: datetime
    claimed_by: str | None
    lease_expires_at: datetime | None


class StatementOut(BaseModel):
    source: Literal["decision", "review", "correction"]
    at: datetime
    statement: dict[str, Any]


class VerdictOut(BaseModel):
    kind: Literal["review", "correction", "second_review"]
    by: str
    at: datetime
    verdict: Literal["approve", "reject"]
    violation_reason: str | None
    reason: str | None = Field(description="Why a correction amended the verdict.")
    note: str | None


class ShadowOut(BaseModel):
    decision_id: str
    decided_at: datetime
    model_version: str
    policy_version: str
    risk: float | None
    decision: Decision
    tier_risk: dict[str, float] | None


class ModelInForce(BaseModel):
    model_version: str | None
    event: str | None = Field(description="promote, reload or forced_reload; null when no audited change did.")
    at: datetime | None
    by: str | None
    reason: str | None
    bundle: str | None = None
    registry_version: str | None = None
    note: str


class TimelineEvent(BaseModel):
    at: datetime
    event: str
    text: str


class DecisionAudit(BaseModel):
    """Everything about one decision, with `why` in plain words first and its timeline last."""

    decision_id: str
    listing_id: str
    why: str
    received_at: datetime
    decided_at: datetime
    decision: Decision
    automated: bool
    model_decision: Decision | None
    risk: float | None
    tier_risk: dict[str, float] | None
    decision_tier: str | None
    model_version: str | None
    policy_version: str
    thresholds: Thresholds
    policy_in_force: PolicyInForce
    reasons: list[Reason]
    rules_matched: list[RuleInForceOut]
    rules_shadow: list[RuleInForceOut]
    fallback_reason: str | None
    inclusion_prob: float | None
    qa_sample: bool
    would_have_been: Decision | None
    queue: QueueEntryOut | None
    statements_of_reasons: list[StatementOut]
    verdicts: list[VerdictOut] = Field(description="The review, then its corrections in order, then second reviews.")
    verdict_in_force: VerdictOut | None = Field(description="The latest review or correction.")
    overturn: bool | None = Field(
        description="On an audit with a verdict: whether the verdict in force contradicts the automated decision."
    )
    shadow: ShadowOut | None
    model_in_force: ModelInForce
    listing: dict[str, Any]
    timeline: list[TimelineEvent]


class ListingHistory(BaseModel):
    listing_id: str
    decisions: list[DecisionAudit] = Field(description="Every decision of the listing, in the order received.")
    truncated: bool = Field(description="True when the listing has more decisions than one answer holds.")


# --- policy -------------------------------------------------------------------------------------------

Threshold = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
AuditRate = Annotated[float, Field(ge=MIN_AUDIT_RATE, le=1, allow_inf_nan=False)]


class AuditUpdate(BaseModel):
    """Audit sampling rates by stratum and the audit lane's age limit; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    near_rate: AuditRate | None = Field(default=None, description="Audit rate of auto-passes near t_pass.")
    block_rate: AuditRate | None = Field(default=None, description="Audit rate of auto-blocks.")
    near_fraction: float | None = Field(
        default=None, gt=0, le=1, description="An auto-pass is 'near' when risk / t_pass >= this."
    )
    max_age_hours: float | None = Field(
        default=None, gt=0, le=24 * 365, description="Audits older than this are claimed before anything else."
    )


Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class QualityUpdate(BaseModel):
    """Rates of blind second review and gold items; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    second_review_rate: Rate | None = Field(
        default=None, description="Chance that a first verdict on a review-lane item gets a blind second review."
    )
    gold_rate: Rate | None = Field(
        default=None, description="Chance that each item of a claim is a gold item (a known answer) instead."
    )


ChangeReason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=2_000),
    Field(description="Why the policy changes: kept in the audit trail."),
]


ForceBlockRule = Annotated[
    bool,
    Field(
        description="put in force a block rule whose precision is not certified on the bundle's labelled "
        "history (admin; audited with the reason and the certificate)"
    ),
]


class PolicyUpdate(BaseModel):
    """A new policy. Fields left out keep their current value; the server assigns the version.

    Ordering (0 <= t_pass < t_block <= 1, per segment too) and rules are checked by `Policy.validate`.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    t_pass: Threshold | None = None
    t_block: Threshold | None = None
    segment_by: str | None = Field(default=None, min_length=1, max_length=64)
    segments: dict[Annotated[str, Field(max_length=200)], tuple[Threshold, Threshold]] | None = Field(
        default=None, max_length=1_000, description="segment value -> [t_pass, t_block]"
    )
    rules: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=200,
        description="The whole rule list: refused unless `replace_rules` is true (change one rule through "
        "/v1/policy/rules/{name}).",
    )
    replace_rules: bool = Field(
        default=False, description="Confirms that `rules` replaces every rule in force (audited as such)."
    )
    qa_sample_rate: AuditRate | None = Field(
        default=None, description="Audit floor: the audit rate of auto-passes far from t_pass, never zero."
    )
    audit: AuditUpdate | None = None
    quality: QualityUpdate | None = None
    tier_pass: dict[Annotated[str, Field(max_length=64)], Threshold] | None = Field(
        default=None,
        max_length=100,
        description="violation tier -> its auto-pass threshold on that tier's risk (in [0, 1)); tiers left out "
        "keep theirs. Only the tiers of the serving bundle (see `tiers` in GET /v1/policy).",
        examples=[{"severe": 0.01}],
    )
    targets: dict[str, Any] | None = None
    reason: ChangeReason
    force: ForceBlockRule = False


class RulePut(BaseModel):
    """One rule, added or replaced whole (its name is the one in the path; its version is the server's:
    one sent here, as in a rule read from GET /v1/policy or a suggestion, is not taken)."""

    model_config = ConfigDict(extra="forbid")

    rule: dict[str, Any] = Field(
        description="action, kind, terms/fields or column/values, mode (enforce | shadow), enabled (see GET /v1/policy)"
    )
    reason: ChangeReason
    force: ForceBlockRule = False


RuleMode = Literal["enforce", "shadow"]


class RulePatch(BaseModel):
    """Fields of one existing rule to change: in `changes` (e.g. {"action": "review"} or new `terms`), or
    the top-level `mode` and `enabled` ({"enabled": false} disables it, {"mode": "shadow"} demotes it).
    A rule's `name` and `version` cannot be changed: either in `changes` is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")

    changes: dict[str, Any] = Field(default_factory=dict, max_length=10)
    mode: RuleMode | None = Field(default=None, description="enforce: the rule acts; shadow: matched and logged only")
    enabled: bool | None = Field(default=None, description="false: kept in the policy but not matched")
    reason: ChangeReason
    force: ForceBlockRule = False

    def rule_changes(self) -> dict[str, Any]:
        """Every field to change, `mode` and `enabled` included."""
        top = {k: v for k, v in (("mode", self.mode), ("enabled", self.enabled)) if v is not None}
        return {**self.changes, **top}


class RuleToggle(BaseModel):
    """Why a rule is enabled or disabled (kept in the audit trail)."""

    model_config = ConfigDict(extra="forbid")

    reason: ChangeReason
    force: ForceBlockRule = False


class TierOut(BaseModel):
    """One violation tier of the serving bundle under the policy in force."""

    name: str
    t_pass: float | None = Field(description="Auto-pass threshold on this tier's risk; null: the policy sets none.")
    recall_target: float | None = Field(
        description="The recall the policy certified for this tier, else the bundle's data-config target."
    )
    certified: bool = Field(description="Whether this tier's recall target is certified for t_pass.")


class PolicyOut(BaseModel):
    model_version: str | None
    ready: bool
    policy: dict[str, Any]
    guarantee_state: str = Field(description="certified | provisional, not certified | hand_set, not certified | none")
    tiers: list[TierOut] = Field(
        default_factory=list, description="The bundle's violation tiers, their thresholds and targets ([] if untiered)."
    )
    changed: bool | None = Field(
        default=None,
        description="On a policy change: true when it put a new policy version in force (audited), false when "
        "it changed nothing (no new version, no audit row; `policy` is the one in force). Null on a read.",
    )


class PolicyChangeOut(BaseModel):
    id: int
    at: datetime
    actor: str
    old_version: str | None
    new_version: str | None
    old: dict[str, Any]
    new: dict[str, Any]
    reason: str | None


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle: str | None = Field(
        default=None, min_length=1, max_length=4096, description="Bundle directory (default: the configured one)."
    )
    force: bool = Field(
        default=False, description="Serve a bundle that is not the promoted champion (needs a reason; audited)."
    )
    reason: ChangeReason | None = None


class ReloadResponse(BaseModel):
    model_version: str | None
    policy_version: str
    bundle: str
    event: str = Field(description="How the model change is audited: reload or forced_reload.")
