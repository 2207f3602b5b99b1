"""Corrections of verdicts on both backends: the first verdict is kept, the latest is in force for labels,
merchant history and the other reads of verdicts, each carries its statement of reasons, and a stale
amendment is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from features.config import DataConfig
from serving.engine import correction_statement, verdict_statement
from serving.store import ConflictError, DecisionRecord, NotFoundError, Store
from serving.store.records import Correction, VerdictInForce
from tests.serving.conftest import FakeClock, make_decision


def reviewed(store: Store, verdict: str, reason: str | None = None, **decision: object) -> DecisionRecord:
    (record,) = store.record_decisions([make_decision(**decision)])
    store.record_review(record.decision_id, "ana", verdict, reason, 30.0, verdict_statement(record, verdict, reason))
    return record


def amend(store: Store, record: DecisionRecord, verdict: str, reason: str | None, by: str = "lead") -> VerdictInForce:
    previous = store.verdict_in_force(record.decision_id)
    assert previous is not None
    statement = correction_statement(record, previous.verdict, previous.statement_of_reasons, verdict, reason)
    store.record_correction(previous, by, verdict, reason, "second look at the photos", "see ticket 7", statement)
    after = store.verdict_in_force(record.decision_id)
    assert after is not None
    return after


def corrections(store: Store, decision_id: str) -> list[Correction]:
    trail = store.decision_trail(decision_id)
    assert trail is not None
    return trail.corrections


def test_a_correction_keeps_the_review_and_the_latest_verdict_is_in_force(store: Store, clock: FakeClock) -> None:
    record = reviewed(store, "approve")
    clock.advance(60)
    in_force = amend(store, record, "reject", "counterfeit")
    clock.advance(60)
    again = amend(store, record, "reject", "prohibited_item")

    review = store.get_review(record.decision_id)
    assert review is not None and review.verdict == "approve" and review.statement_of_reasons is None
    first, second = corrections(store, record.decision_id)
    assert (first.previous_verdict, first.verdict, first.violation_reason) == ("approve", "reject", "counterfeit")
    assert (second.previous_verdict, second.previous_violation_reason) == ("reject", "counterfeit")
    assert first.corrected_at < second.corrected_at and first.corrected_by == "lead"
    assert first.reason == "second look at the photos" and first.note == "see ticket 7"
    assert first.overturn is None  # a review, not an audit
    assert (in_force.verdict, in_force.reviewer, in_force.correction_id) == ("reject", "ana", first.id)
    assert (again.verdict, again.violation_reason, again.correction_id) == ("reject", "prohibited_item", second.id)
    assert again.statement_of_reasons is not None
    assert again.statement_of_reasons["category"] == "unsafe_and_prohibited_products"
    assert again.statement_of_reasons["automated_decision"] is False


def test_labels_and_merchant_history_follow_the_latest_verdict(store: Store) -> None:
    kept = reviewed(store, "reject", "counterfeit")
    amended = reviewed(store, "approve")
    lifted = reviewed(store, "reject", "counterfeit")
    amend(store, amended, "reject", "prohibited_item")
    amend(store, lifted, "approve", None)

    labels = store.export_labels(DataConfig()).set_index("decision_id")
    rows = labels.loc[[kept.decision_id, amended.decision_id, lifted.decision_id]]
    assert rows["label"].tolist() == [1, 1, 0]
    assert rows["violation_reason"].fillna("").tolist() == ["counterfeit", "prohibited_item", ""]
    assert rows["corrected"].tolist() == [False, True, True]
    review = store.get_review(amended.decision_id)
    assert review is not None and rows.loc[amended.decision_id, "reviewed_at"] == review.reviewed_at
    outcomes = {o.decision_id: o.rejected for o in store.merchant_outcomes_after(None)}
    assert outcomes == {kept.decision_id: True, amended.decision_id: True, lifted.decision_id: False}
    # production estimates and rule analytics read the same verdicts
    window = (kept.decided_at - timedelta(hours=1), kept.decided_at + timedelta(hours=1))
    monitored = {row["decision_id"]: row["verdict"] for row in store.decisions_with_verdicts(*window, 100)}
    assert [monitored[r.decision_id] for r in (kept, amended, lifted)] == ["reject", "reject", "approve"]
    rule_log, _ = store.rule_log(*window, 100)
    assert rule_log.set_index("decision_id").loc[amended.decision_id, "verdict"] == "reject"
    indexed = {r.decision_id: (r.verdict, r.violation_reason) for r in store.reviewed_listings_after(None)}
    assert indexed[amended.decision_id] == ("reject", "prohibited_item") and indexed[lifted.decision_id] == (
        "approve",
        "",
    )


def test_amended_statements_restrict_or_lift(store: Store) -> None:
    rejected = reviewed(store, "reject", "counterfeit")
    lifted = amend(store, rejected, "approve", None)
    (passed,) = store.record_decisions(
        [make_decision(decision="auto_pass", automated=True, qa_sample=True, rules_matched=[])]
    )
    store.record_review(passed.decision_id, "ana", "approve")
    taken_down = amend(store, passed, "reject", "misleading_health_claim")

    assert lifted.statement_of_reasons is not None
    assert lifted.statement_of_reasons["restriction"] == "restriction_lifted"
    assert lifted.statement_of_reasons["automated_decision"] is False
    assert "amended to approve" in lifted.statement_of_reasons["facts_and_circumstances"]
    assert "rejected by a reviewer (counterfeit)" in lifted.statement_of_reasons["facts_and_circumstances"]
    assert taken_down.statement_of_reasons is not None
    assert taken_down.statement_of_reasons["restriction"] == "listing_removed"
    assert taken_down.statement_of_reasons["category"] == "consumer_information_infringements"
    assert taken_down.statement_of_reasons["facts_and_circumstances"].startswith("verdict amended: approved, now")
    (correction,) = corrections(store, passed.decision_id)
    assert correction.overturn is True  # an audit: the auto-pass is overturned by the amended verdict


def test_stale_empty_and_unknown_corrections_are_refused(store: Store) -> None:
    record = reviewed(store, "approve")
    stale = store.verdict_in_force(record.decision_id)
    assert stale is not None
    amend(store, record, "reject", "counterfeit")
    with pytest.raises(ConflictError, match="amended meanwhile"):
        store.record_correction(stale, "lead", "reject", "prohibited_item", "late")
    current = store.verdict_in_force(record.decision_id)
    assert current is not None
    with pytest.raises(ConflictError, match="nothing to amend"):
        store.record_correction(current, "lead", "reject", "counterfeit", "the same again")
    assert len(corrections(store, record.decision_id)) == 1
    (waiting,) = store.record_decisions([make_decision()])
    assert store.verdict_in_force(waiting.decision_id) is None
    with pytest.raises(NotFoundError):
        store.verdict_in_force("no-such-decision")
