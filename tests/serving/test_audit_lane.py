"""Audits in the store (SQLite and PostgreSQL): inclusion probabilities logged, audited decisions in their
own lane, claimed first once older than the age limit, overturns recorded, labels exported with the
probabilities retraining weights by; and in the engine: probabilities never zero, audited decisions in
force."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import MetaData, Table, create_engine, inspect, text

from bundle.load import Bundle
from decision.audit import MIN_AUDIT_RATE, AuditPlan, inclusion_probabilities, pass_margin
from decision.policy import CODE_REVIEW, DECISIONS, route
from features.config import DataConfig
from serving.engine import DecisionEngine
from serving.store import Store, schema
from serving.store.records import DecisionRecord
from tests.serving.conftest import FakeClock, make_decision, store_opener
from tests.serving.test_store_layout import _columns_of, as_row, write_rows

DAY = timedelta(hours=24)


def audited(decision: str = "auto_pass", **overrides: object) -> DecisionRecord:
    """An automated decision in force, drawn for audit."""
    values: dict[str, object] = {"risk": 0.01, "priority": 0.001, "inclusion_prob": 0.02, **overrides}
    return make_decision(decision=decision, automated=True, qa_sample=True, **values)


# -- the store ---------------------------------------------------------------------------------------


def test_inclusion_probabilities_are_stored_and_read_back(store: Store) -> None:
    records = [
        make_decision(inclusion_prob=1.0),
        audited(inclusion_prob=0.1),
        make_decision(decision="auto_pass", automated=True, inclusion_prob=0.001),
        make_decision(decision="auto_block", automated=True, inclusion_prob=0.25),
    ]
    store.record_decisions(records)
    for record in records:
        stored = store.get_decision(record.decision_id)
        assert stored is not None and stored.inclusion_prob == record.inclusion_prob


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_a_record_refuses_an_inclusion_probability_outside_0_1(bad: float) -> None:
    with pytest.raises(ValueError, match="inclusion_prob"):
        make_decision(inclusion_prob=bad)


def test_an_audited_decision_is_queued_in_the_audit_lane_and_stays_in_force(store: Store) -> None:
    review, audit = make_decision(), audited()
    store.record_decisions([review, audit, make_decision(decision="auto_pass", automated=True)])

    assert store.queue_counts() == {"pending": 2, "claimed": 0, "done": 0}
    assert store.queue_counts("review") == {"pending": 1, "claimed": 0, "done": 0}
    assert store.queue_counts("audit") == {"pending": 1, "claimed": 0, "done": 0}
    items = {item.decision_id: item for item in store.claim("alice", n=10)}
    assert items[review.decision_id].lane == "review"
    assert items[audit.decision_id].lane == "audit" and items[audit.decision_id].qa_sample
    assert items[audit.decision_id].decision.decision == "auto_pass"  # in force while it is audited


def test_audits_wait_by_priority_until_overdue_then_go_first_oldest_first(store: Store, clock: FakeClock) -> None:
    old_audit, new_audit = audited(), audited(priority=0.05)
    store.record_decisions([old_audit])
    clock.advance(3600)
    store.record_decisions([new_audit])
    reviews = [make_decision(priority=0.5 + i / 100) for i in range(4)]
    store.record_decisions(reviews)

    week = 7 * 86_400  # leases that outlast the test: nothing comes back by expiry
    first = store.claim("alice", n=1, lease_seconds=week)  # nothing overdue: the highest priority
    assert [i.decision_id for i in first] == [reviews[-1].decision_id]
    clock.advance(DAY.total_seconds() - 3600)  # the old audit is now 24 h old, the new one 23 h
    due = store.claim("bob", n=2, lease_seconds=week)
    assert [i.decision_id for i in due] == [old_audit.decision_id, reviews[-2].decision_id]
    clock.advance(3600)
    assert [i.decision_id for i in store.claim("carol", n=1, lease_seconds=week)] == [new_audit.decision_id]
    clock.advance(3600)  # a shorter age limit (the policy in force) makes audits due sooner
    late = audited()
    store.record_decisions([late])
    clock.advance(1800)
    assert [i.decision_id for i in store.claim("dan", n=1, audit_max_age=timedelta(minutes=30))] == [late.decision_id]
    with pytest.raises(ValueError, match="audit_max_age"):
        store.claim("dan", audit_max_age=timedelta(0))


def test_an_overdue_audit_with_an_expired_lease_goes_first_again(store: Store, clock: FakeClock) -> None:
    audit = audited()
    store.record_decisions([audit, make_decision(priority=0.9)])
    clock.advance(DAY.total_seconds())
    assert store.claim("alice", n=1, lease_seconds=60)[0].decision_id == audit.decision_id
    clock.advance(61)
    assert store.claim("bob", n=1)[0].decision_id == audit.decision_id


@pytest.mark.parametrize(
    ("decision", "verdict", "overturn"),
    [("auto_pass", "reject", True), ("auto_pass", "approve", False), ("auto_block", "approve", True),
     ("auto_block", "reject", False)],
)  # fmt: skip
def test_an_audit_verdict_records_whether_it_overturns(
    store: Store, decision: str, verdict: str, overturn: bool
) -> None:
    audit = audited(decision)
    store.record_decisions([audit])
    review = store.record_review(audit.decision_id, "alice", verdict)
    assert review.overturn is overturn
    assert store.get_review(audit.decision_id) == review


def test_a_review_verdict_is_no_overturn(store: Store) -> None:
    record = make_decision()
    store.record_decisions([record])
    assert store.record_review(record.decision_id, "alice", "reject").overturn is None
    assert store.get_review(record.decision_id).overturn is None  # type: ignore[union-attr]


def test_exported_labels_carry_inclusion_probability_audit_flag_and_decision_in_force(store: Store) -> None:
    review = make_decision(inclusion_prob=1.0)
    audit = audited("auto_block", inclusion_prob=0.1, risk=0.97)
    old_review = make_decision()  # logged before probabilities were kept
    old_qa = make_decision(qa_sample=True, would_have_been="auto_pass")
    store.record_decisions([review, audit, old_review, old_qa])
    for record, verdict in [(review, "reject"), (audit, "approve"), (old_review, "approve"), (old_qa, "reject")]:
        store.record_review(record.decision_id, "alice", verdict)

    labels = store.export_labels(DataConfig()).set_index("decision_id")

    assert labels["inclusion_prob"].dtype == np.float64
    assert labels.loc[review.decision_id, ["inclusion_prob", "qa_sample", "logged_decision"]].tolist() == [
        1.0,
        False,
        "human_review",
    ]
    assert labels.loc[audit.decision_id, ["inclusion_prob", "qa_sample", "logged_decision", "label"]].tolist() == [
        0.1,
        True,
        "auto_block",
        0,
    ]
    assert labels.loc[old_review.decision_id, "inclusion_prob"] == 1.0
    assert np.isnan(labels.loc[old_qa.decision_id, "inclusion_prob"])  # unknown: never guessed


def test_an_empty_export_has_the_new_columns(store: Store) -> None:
    assert {"inclusion_prob", "qa_sample", "logged_decision"} <= set(store.export_labels(DataConfig()).columns)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'before-audits.db'}"


def test_a_log_from_before_audit_lanes_is_migrated(old_url: str, clock: FakeClock) -> None:
    """init_schema adds inclusion_prob, lane and overturn (and the lane index); items queued before lanes
    read as the review lane, and old QA samples (sent to review) keep their old meaning."""
    added = {("decisions", "inclusion_prob"), ("review_queue", "lane"), ("reviews", "overturn")}
    metadata = MetaData()
    tables = {}
    for table in (schema.decisions, schema.queue, schema.reviews):
        keep = [c for c in _columns_of(table) if (table.name, c.name) not in added]
        tables[table.name] = Table(table.name, metadata, *keep)
    for table in (schema.api_keys, schema.policy_audit):
        table.to_metadata(metadata)
    engine = create_engine(old_url)
    metadata.create_all(engine)
    engine.dispose()
    old_qa = make_decision(qa_sample=True, would_have_been="auto_pass", decided_at=clock.now, received_at=clock.now)
    row = {k: v for k, v in as_row(old_qa).items() if k != "inclusion_prob"}
    write_rows(old_url, tables["decisions"], [row])
    queue_row = {"decision_id": old_qa.decision_id, "priority": 0.0, "enqueued_at": clock.now, "status": "pending"}
    write_rows(old_url, tables["review_queue"], [{**queue_row, "qa_sample": True}])

    with store_opener(old_url, None, clock) as open_store:
        store = open_store()
        assert store.get_decision(old_qa.decision_id) == old_qa  # inclusion_prob None
        clock.advance(2 * DAY.total_seconds())
        audit = audited()
        store.record_decisions([audit])
        assert store.queue_counts("review")["pending"] == 1 and store.queue_counts("audit")["pending"] == 1
        # the old QA item, two days old, is no overdue audit: the new audit's higher priority goes first
        first, second = store.claim("alice", n=2)
        assert (first.decision_id, first.lane) == (audit.decision_id, "audit")
        assert (second.decision_id, second.lane) == (old_qa.decision_id, "review")
        assert store.record_review(old_qa.decision_id, "alice", "reject").overturn is None
        open_store()  # init_schema again: safe to repeat
    engine = create_engine(old_url)
    inspector = inspect(engine)
    for table_name, column in added:
        assert column in {c["name"] for c in inspector.get_columns(table_name)}
    assert schema.QUEUE_LANE_INDEX.name in {i["name"] for i in inspector.get_indexes("review_queue")}
    with engine.connect() as conn:
        lanes: dict[str, str | None] = {
            str(row[0]): row[1] for row in conn.execute(text("SELECT decision_id, lane FROM review_queue"))
        }
    engine.dispose()
    assert lanes == {old_qa.decision_id: None, audit.decision_id: "audit"}


# -- the engine --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return Bundle.load(bundle_dir)


@pytest.fixture(scope="module")
def listings(generated_dir: Path, bundle: Bundle) -> list[dict[str, object]]:
    frame = pd.read_parquet(generated_dir / "reviews.parquet").sample(2000, random_state=5)
    return frame[bundle.config.listing_columns].to_dict("records")


def test_every_decision_is_logged_with_its_inclusion_probability_never_zero(
    bundle: Bundle, listings: list[dict[str, object]]
) -> None:
    plan = AuditPlan(near_rate=0.3, block_rate=0.2, near_fraction=0.5)
    scores = DecisionEngine.from_bundle(bundle).score(listings)
    t_block = float(np.quantile(scores.risk, 0.97))  # some blocks in this sample
    policy = dataclasses.replace(
        bundle.policy,
        t_pass=min(bundle.policy.t_pass, t_block - 1e-9),
        t_block=t_block,
        segment_by=None,
        segments={},
        qa_sample_rate=0.01,
        audit=plan,
    ).validate()
    engine = DecisionEngine.from_bundle(bundle, policy=policy, seed=3)
    decided = engine.decide(listings, scores)

    codes = np.array([DECISIONS.index(r.decision) for r in decided])
    pi = np.array([r.inclusion_prob for r in decided])
    assert (pi >= MIN_AUDIT_RATE).all() and (pi[codes == CODE_REVIEW] == 1.0).all()
    tier_pass = policy.tier_pass_vector(bundle.tier_names)
    t_pass, _ = engine.thresholds(listings)
    margin = pass_margin(scores.risk, t_pass, scores.tier_risk, tier_pass)
    np.testing.assert_allclose(pi, inclusion_probabilities(codes, margin, 0.01, plan))
    assert {0.01, 0.3, 0.2} <= set(np.round(pi[codes != CODE_REVIEW], 6))  # every stratum present
    # audited decisions stay in force: the decisions are the policy function's, audited or not
    block, review, _ = engine.match_rules(listings, engine.identify(listings))
    pass_at, block_at = engine.thresholds(listings)
    expected = route(scores.risk, pass_at, block_at, block, review, scores.tier_risk, tier_pass)
    assert codes.tolist() == expected.tolist()
    sampled = [r for r in decided if r.qa_sample]
    assert sampled and all(r.automated and r.decision != "human_review" for r in sampled)
    assert all(r.would_have_been is None and r.lane == "audit" for r in sampled)
    assert all(r.statement_of_reasons is not None for r in sampled if r.decision == "auto_block")  # in force
    # the draw hits each stratum at its rate (Poisson sampling)
    automated = codes != CODE_REVIEW
    drawn = np.array([r.qa_sample for r in decided])
    expected_audits = pi[automated].sum()
    assert abs(drawn.sum() - expected_audits) < 4 * np.sqrt((pi[automated] * (1 - pi[automated])).sum()) + 1
