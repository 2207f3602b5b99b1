"""The one schema of the decision log, portable between SQLite and PostgreSQL (SQLAlchemy Core)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps no offset, so store UTC, read as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """JSON kept as text (orjson), so both backends store and return exactly the same document."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else orjson.dumps(value, option=JSON_OPTIONS).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else orjson.loads(value)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK that `column` holds one of `values`, spelled as equalities rather than `IN (...)`.

    The same rule (NULL passes both spellings), but SQLite builds a lookup table for an `IN` list of
    three or more constants each time a statement runs, which took some 15% of logging a decision.
    """
    return " OR ".join(f"{column} = '{value}'" for value in values)


metadata = MetaData()

_DECISION_VALUES = ("auto_pass", "auto_block", "human_review")

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", String(36), primary_key=True),
    Column("request_id", String(128), nullable=True),
    Column("listing_id", String(256), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("automated", Boolean, nullable=False),
    Column("risk", Float, nullable=True),
    Column("model_version", String(128), nullable=True),
    Column("policy_version", String(128), nullable=False),
    Column("t_pass", Float, nullable=True),
    Column("t_block", Float, nullable=True),
    Column("priority", Float, nullable=False),
    Column("rules_matched", JSONText, nullable=False),
    Column("reasons", JSONText, nullable=False),
    Column("qa_sample", Boolean, nullable=False),
    Column("would_have_been", String(16), nullable=True),
    Column("fallback_reason", String(128), nullable=True),
    Column("statement_of_reasons", JSONText, nullable=True),
    Column("listing", JSONText, nullable=False),
    Column("key_id", String(32), nullable=True),  # added later: see ADDED_COLUMNS
    Column("request_hash", String(64), nullable=True),  # added later: see ADDED_COLUMNS
    Column("tier_risk", JSONText, nullable=True),  # added later: see ADDED_COLUMNS
    Column("decision_tier", String(64), nullable=True),  # added later: see ADDED_COLUMNS
    Column("inclusion_prob", Float, nullable=True),  # added later: see ADDED_COLUMNS
    Column("rules_shadow", JSONText, nullable=True),  # added later: see ADDED_COLUMNS
    Column("model_decision", String(16), nullable=True),  # added later: see ADDED_COLUMNS
    CheckConstraint(_one_of("decision", _DECISION_VALUES), name="ck_decisions_decision"),
    CheckConstraint(
        f"would_have_been IS NULL OR {_one_of('would_have_been', _DECISION_VALUES)}",
        name="ck_decisions_would_have_been",
    ),
    Index("ix_decisions_decided_at", "decided_at", "decision_id"),
)

# Idempotency: one decision per (key_id, listing_id, request_id), so two API keys use request ids
# independently. Decisions without a request_id never collide (NULLs are distinct in a unique key, on
# both databases), so the index leaves them out: logging them adds no entry to it, where an entry per
# decision, placed by listing id, dirtied about one page per decision once the log outgrew the page
# cache. `init_schema` moves older databases to this index (see `IDEMPOTENCY_INDEX_BEFORE`).
IDEMPOTENCY_INDEX = Index(
    "uq_decisions_key_listing_request",
    decisions.c.key_id,
    decisions.c.listing_id,
    decisions.c.request_id,
    unique=True,
    sqlite_where=decisions.c.request_id.is_not(None),
    postgresql_where=decisions.c.request_id.is_not(None),
)
# The earlier rule, one decision per (listing_id, request_id): a partial unique index of this name, or
# in the first releases a table-wide UNIQUE constraint (which SQLite cannot drop: such a log keeps the
# stricter rule, and a second key reusing a request id for the same listing gets a conflict).
IDEMPOTENCY_INDEX_BEFORE = "uq_decisions_listing_request"

queue = Table(
    "review_queue",
    metadata,
    Column("decision_id", String(36), ForeignKey("decisions.decision_id"), primary_key=True),
    Column("priority", Float, nullable=False),
    Column("enqueued_at", UTCDateTime, nullable=False),
    Column("status", String(8), nullable=False),
    Column("claimed_by", String(128), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("qa_sample", Boolean, nullable=False),
    # added later (see ADDED_COLUMNS): 'review' | 'audit' | 'second'; NULL on items queued before lanes, read
    # as 'review'
    Column("lane", String(8), nullable=True),
    # added later (see ADDED_COLUMNS): who gave the first verdict of an item sent for a blind second review
    Column("first_reviewer", String(128), nullable=True),
    # added later (see ADDED_COLUMNS): the second-review rate of the draw made at the first verdict
    Column("second_review_rate", Float, nullable=True),
    CheckConstraint(_one_of("status", ("pending", "claimed", "done")), name="ck_queue_status"),
    Index("ix_queue_status_priority", "status", "priority"),
)
# Overdue audits (older than the policy's age limit) are found by (status, lane, enqueued_at).
QUEUE_LANE_INDEX = Index("ix_queue_status_lane_enqueued", queue.c.status, queue.c.lane, queue.c.enqueued_at)

reviews = Table(
    "reviews",
    metadata,
    Column("decision_id", String(36), ForeignKey("decisions.decision_id"), primary_key=True),
    Column("reviewer", String(128), nullable=False),
    Column("verdict", String(8), nullable=False),
    Column("violation_reason", String(256), nullable=True),
    Column("review_seconds", Float, nullable=True),
    Column("reviewed_at", UTCDateTime, nullable=False),
    Column("statement_of_reasons", JSONText, nullable=True),  # added later: see ADDED_COLUMNS
    Column("overturn", Boolean, nullable=True),  # added later: see ADDED_COLUMNS
    Column("note", Text, nullable=True),  # added later: see ADDED_COLUMNS
    CheckConstraint("verdict IN ('approve', 'reject')", name="ck_reviews_verdict"),
    Index("ix_reviews_reviewed_at", "reviewed_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("scopes", String(128), nullable=False),
    Column("key_hash", String(256), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("team", String(128), nullable=True),  # added later: see ADDED_COLUMNS
)

# Every change of an API key, audited: created, given a new token, revoked; who did it and when. The keys
# table keeps only the key as it is now.
key_audit = Table(
    "key_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("event", String(8), nullable=False),
    Column("key_name", String(128), nullable=False),
    Column("scopes", String(128), nullable=False),
    Column("team", String(128), nullable=True),
    CheckConstraint(_one_of("event", ("create", "rotate", "revoke")), name="ck_key_audit_event"),
    Index("ix_key_audit_key_name", "key_name", "id"),
)

policy_audit = Table(
    "policy_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("old_version", String(128), nullable=True),
    Column("new_version", String(128), nullable=True),
    Column("old", JSONText, nullable=False),
    Column("new", JSONText, nullable=False),
    Column("reason", Text, nullable=True),  # added later: see ADDED_COLUMNS
)

# The policy in force for each bundle: every version put in force through the API, written in the same
# transaction as its audit row. A bundle's own policy.json applies only while it has no row here.
policy_versions = Table(
    "policy_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bundle_version", String(128), nullable=False),
    Column("version", String(128), nullable=False, unique=True),
    Column("at", UTCDateTime, nullable=False),
    Column("policy", JSONText, nullable=False),
    Index("ix_policy_versions_bundle", "bundle_version", "id"),
)

# One row rewritten by `Database.probe_write`: the write that tells a failing decision log has recovered.
write_probe = Table(
    "write_probe",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("checked_at", UTCDateTime, nullable=False),
)

# Each verdict's outcome for its merchant (reviews and audits alike), written in the verdict's transaction:
# what the service adds to the bundle's merchant snapshot (`features.merchant.MerchantUpdates`). Verdicts
# recorded before this table existed are added when an engine loads (`backfill_merchant_outcomes`).
merchant_outcomes = Table(
    "merchant_outcomes",
    metadata,
    Column("decision_id", String(36), ForeignKey("decisions.decision_id"), primary_key=True),
    Column("merchant_id", String(256), nullable=False),
    Column("reviewed_at", UTCDateTime, nullable=False),
    Column("rejected", Boolean, nullable=False),
    Index("ix_merchant_outcomes_reviewed_at", "reviewed_at"),
)

# Amendments of a verdict, in order (the `reviews` row is never changed: history keeps both). Each names
# who amended it and why, the verdict it replaced and the new one, the new verdict's statement of reasons
# (a restriction, or its lifting) and, on an audit, whether the new verdict overturns the decision in force.
# The latest row is the verdict in force: labels, merchant history and the audit reads follow it.
review_corrections = Table(
    "review_corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", String(36), ForeignKey("decisions.decision_id"), nullable=False),
    Column("corrected_by", String(128), nullable=False),
    Column("corrected_at", UTCDateTime, nullable=False),
    Column("previous_verdict", String(8), nullable=False),
    Column("previous_violation_reason", String(256), nullable=True),
    Column("verdict", String(8), nullable=False),
    Column("violation_reason", String(256), nullable=True),
    Column("reason", Text, nullable=False),
    Column("note", Text, nullable=True),
    Column("statement_of_reasons", JSONText, nullable=True),
    Column("overturn", Boolean, nullable=True),
    CheckConstraint("verdict IN ('approve', 'reject')", name="ck_review_corrections_verdict"),
    CheckConstraint("previous_verdict IN ('approve', 'reject')", name="ck_review_corrections_previous_verdict"),
    Index("ix_review_corrections_decision", "decision_id", "id"),
)

# Indexes added after their table was first released: `init_schema` creates them where missing.
ADDED_INDEXES: tuple[Index, ...] = (QUEUE_LANE_INDEX,)

# Every change of the model a service serves or shadows, audited: promotions (`triage promote`), reloads
# (forced ones with their reason), the shadow set or cleared. The latest promote/reload row is the model
# in force: every worker polls it.
model_audit = Table(
    "model_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("event", String(16), nullable=False),
    Column("old_model", String(128), nullable=True),
    Column("new_model", String(128), nullable=True),
    Column("bundle", Text, nullable=True),
    Column("registry_version", String(32), nullable=True),
    Column("policy_version", String(128), nullable=True),
    Column("reason", Text, nullable=True),
    CheckConstraint(
        _one_of("event", ("promote", "reload", "forced_reload", "shadow_set", "shadow_clear")),
        name="ck_model_audit_event",
    ),
)

# The shadow model's decision for a champion decision (same decision_id): logged beside it, never acted on.
shadow_decisions = Table(
    "shadow_decisions",
    metadata,
    Column("decision_id", String(36), primary_key=True),
    Column("decided_at", UTCDateTime, nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("policy_version", String(128), nullable=False),
    Column("risk", Float, nullable=True),
    Column("decision", String(16), nullable=False),
    Column("tier_risk", JSONText, nullable=True),
    CheckConstraint(_one_of("decision", _DECISION_VALUES), name="ck_shadow_decisions_decision"),
    Index("ix_shadow_decisions_model", "model_version", "decided_at"),
)

# Blind second reviews: the verdict of a second reviewer on an item whose first verdict is in force (in
# `reviews`); it never changes that verdict, and measures agreement (`agrees`: same verdict as the first).
second_reviews = Table(
    "second_reviews",
    metadata,
    Column("decision_id", String(36), ForeignKey("decisions.decision_id"), primary_key=True),
    Column("reviewer", String(128), nullable=False),
    Column("verdict", String(8), nullable=False),
    Column("violation_reason", String(256), nullable=True),
    Column("review_seconds", Float, nullable=True),
    Column("reviewed_at", UTCDateTime, nullable=False),
    Column("agrees", Boolean, nullable=False),
    Column("note", Text, nullable=True),  # added later: see ADDED_COLUMNS
    CheckConstraint(_one_of("verdict", ("approve", "reject")), name="ck_second_reviews_verdict"),
    Index("ix_second_reviews_reviewed_at", "reviewed_at"),
)

# Gold items: a past decision's listing and decision, copied, with the verdict it should get. Handed out
# in claims like queue items; their verdicts go to `gold_assignments`, never to reviews or decisions.
gold_items = Table(
    "gold_items",
    metadata,
    Column("gold_id", String(36), primary_key=True),
    Column("source_decision_id", String(36), ForeignKey("decisions.decision_id"), nullable=False),
    Column("decision", JSONText, nullable=False),  # the decision snapshot the reviewer is shown
    Column("expected_verdict", String(8), nullable=False),
    Column("expected_reason", String(256), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("retired_at", UTCDateTime, nullable=True),
    CheckConstraint(_one_of("expected_verdict", ("approve", "reject")), name="ck_gold_items_verdict"),
)

# One gold item handed to one reviewer under a fresh opaque id (what the reviewer sees as the decision id),
# with its lease, and the verdict once given, scored against the expected one.
gold_assignments = Table(
    "gold_assignments",
    metadata,
    Column("assignment_id", String(36), primary_key=True),
    Column("gold_id", String(36), ForeignKey("gold_items.gold_id"), nullable=False),
    Column("reviewer", String(128), nullable=False),
    Column("assigned_at", UTCDateTime, nullable=False),
    Column("lease_expires_at", UTCDateTime, nullable=False),
    Column("verdict", String(8), nullable=True),
    Column("violation_reason", String(256), nullable=True),
    Column("review_seconds", Float, nullable=True),
    Column("reviewed_at", UTCDateTime, nullable=True),
    Column("correct", Boolean, nullable=True),  # the verdict is the expected one
    Column("reason_correct", Boolean, nullable=True),  # a rejection with the expected reason (when one is set)
    Column("note", Text, nullable=True),  # the reviewer's own words (added later: see ADDED_COLUMNS)
    CheckConstraint(f"verdict IS NULL OR {_one_of('verdict', ('approve', 'reject'))}", name="ck_gold_verdict"),
    Index("ix_gold_assignments_reviewer", "reviewer", "gold_id", unique=True),
)


# Columns added after a table was first released: `init_schema` adds them to existing databases
# (nullable, so old rows and old readers are unaffected).
ADDED_COLUMNS: tuple[tuple[Table, str], ...] = (
    (reviews, "statement_of_reasons"),
    (decisions, "key_id"),
    (decisions, "request_hash"),
    (decisions, "tier_risk"),
    (decisions, "decision_tier"),
    (policy_audit, "reason"),
    (decisions, "inclusion_prob"),
    (queue, "lane"),
    (reviews, "overturn"),
    (decisions, "rules_shadow"),
    (decisions, "model_decision"),
    (reviews, "note"),
    (queue, "first_reviewer"),
    (queue, "second_review_rate"),
    (api_keys, "team"),
    (second_reviews, "note"),
    (gold_assignments, "note"),
)
