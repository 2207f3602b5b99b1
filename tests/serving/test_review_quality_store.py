"""Blind second review, gold items and reviewer teams in the store, on both backends."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import MetaData, Table, create_engine

from serving.store import ConflictError, NotFoundError, Store, schema
from tests.serving.conftest import FakeClock, make_decision, store_opener
from tests.serving.test_store import queue_some, run_together
from tests.serving.test_store_layout import _columns_of, write_rows


def first_verdict_drawn(store: Store, reviewer: str = "alice", verdict: str = "reject") -> str:
    """One item claimed by `reviewer`, whose verdict is drawn (rate 1) for a blind second review."""
    (item,) = store.record_decisions([make_decision()])
    assert [c.decision_id for c in store.claim(reviewer)] == [item.decision_id]
    store.record_review(
        item.decision_id,
        reviewer,
        verdict,
        "counterfeit" if verdict == "reject" else None,
        30.0,
        second_review_rate=1.0,
    )
    return item.decision_id


def test_a_drawn_first_verdict_goes_back_blind_to_another_reviewer(store: Store) -> None:
    decision_id = first_verdict_drawn(store)
    first = store.get_review(decision_id)
    outcomes = store.merchant_outcomes_after(None)

    assert store.queue_counts("second") == {"pending": 1, "claimed": 0, "done": 0}
    assert store.claim("alice") == []  # never one's own second review
    (item,) = store.claim("bob")
    assert (item.decision_id, item.lane, item.first_reviewer) == (decision_id, "second", "alice")
    with pytest.raises(ConflictError, match="already reviewed"):
        store.record_review(decision_id, "bob", "approve")  # a second verdict is no first verdict
    with pytest.raises(ConflictError, match="first reviewer"):
        store.record_second_review(decision_id, "alice", "approve")

    second = store.record_second_review(decision_id, "bob", "approve", None, 12.0)

    assert second.agrees is False and store.get_second_review(decision_id) == second
    assert store.get_review(decision_id) == first  # the first verdict stays in force
    assert store.merchant_outcomes_after(None) == outcomes  # merchant history counts it once
    assert store.queue_counts("second") == {"pending": 0, "claimed": 0, "done": 1}
    with pytest.raises(ConflictError, match="already reviewed"):
        store.record_second_review(decision_id, "carol", "reject")


def test_no_draw_closes_the_item_and_audits_are_never_second_reviewed(store: Store) -> None:
    (reviewed,) = queue_some(store, 1)
    (audit,) = store.record_decisions([make_decision(decision="auto_pass", automated=True, qa_sample=True)])
    store.claim("alice", n=2)

    store.record_review(reviewed.decision_id, "alice", "approve", second_review_rate=0.0)
    store.record_review(audit.decision_id, "alice", "approve", second_review_rate=1.0)

    assert store.queue_counts("second") == {"pending": 0, "claimed": 0, "done": 0}
    assert store.queue_counts() == {"pending": 0, "claimed": 0, "done": 2}
    with pytest.raises(ConflictError, match="awaits no second review"):
        store.record_second_review(reviewed.decision_id, "bob", "approve")


def test_two_reviewers_share_an_item_only_as_a_blind_second_review(store: Store) -> None:
    queued = {r.decision_id for r in queue_some(store, 40)}
    reviewers = 4

    def work(worker: int) -> list[tuple[str, str, str | None]]:
        name, handled = f"reviewer-{worker}", []
        while items := store.claim(name, n=2):
            for item in items:
                handled.append((item.decision_id, item.lane, item.first_reviewer))
                if item.lane == "second":
                    store.record_second_review(item.decision_id, name, "approve")
                else:
                    store.record_review(item.decision_id, name, "approve", second_review_rate=0.5)
        return [(decision_id, lane, name if first is None else first) for decision_id, lane, first in handled]

    per_worker = run_together(reviewers, work)
    claims = [
        (decision_id, lane, first, f"reviewer-{worker}")
        for worker, handled in enumerate(per_worker)
        for decision_id, lane, first in handled  # type: ignore[attr-defined]
    ]

    firsts = [(decision_id, reviewer) for decision_id, lane, _, reviewer in claims if lane == "review"]
    seconds = [(decision_id, first, reviewer) for decision_id, lane, first, reviewer in claims if lane == "second"]
    assert sorted(d for d, _ in firsts) == sorted(queued), "every item went to exactly one first reviewer"
    assert len({d for d, _, _ in seconds}) == len(seconds), "a second review went to two reviewers"
    first_of = dict(firsts)
    assert all(first_of[d] == first != reviewer for d, first, reviewer in seconds)
    assert 5 <= len(seconds) <= 35  # about half were drawn
    assert sorted(store.second_review_pairs()["decision_id"]) == sorted(d for d, _, _ in seconds)


def test_gold_items_are_handed_out_like_queue_items_and_never_logged_as_decisions(store: Store) -> None:
    (source,) = store.record_decisions([make_decision(priority=0.7)])
    gold = store.add_gold(source.decision_id, "reject", "counterfeit", "lead")
    decisions_before = store.count_decisions()

    (item,) = store.claim_gold("alice", 1, lease_seconds=300)

    assert item.decision_id not in (source.decision_id, gold.gold_id)
    assert item.decision.decision_id == item.decision_id and item.decision.decision == "human_review"
    assert item.decision.listing == source.listing and item.lane == "review" and item.claimed_by == "alice"
    assert store.get_decision(item.decision_id) is None
    assert store.claim_gold("alice", 1, lease_seconds=300) == []  # each gold item once per reviewer
    with pytest.raises(ConflictError, match="another reviewer"):
        store.answer_gold(item.decision_id, "bob", "reject", "counterfeit")

    answer = store.answer_gold(item.decision_id, "alice", "reject", "prohibited_item", 20.0)

    assert answer.correct is True and answer.reason_correct is False
    with pytest.raises(ConflictError, match="already reviewed"):
        store.answer_gold(item.decision_id, "alice", "approve")
    assert store.count_decisions() == decisions_before and store.get_review(item.decision_id) is None
    assert store.export_labels().empty and store.merchant_outcomes_after(None) == []
    (listed,) = store.list_gold()
    assert (listed.assigned, listed.answered, listed.correct) == (1, 1, 1)
    assert store.gold_answers()["reviewer"].tolist() == ["alice"]


def test_a_retired_gold_item_is_no_longer_handed_out(store: Store) -> None:
    (source,) = store.record_decisions([make_decision()])
    gold = store.add_gold(source.decision_id, "approve", None, "lead")

    retired = store.retire_gold(gold.gold_id)

    assert retired.retired_at is not None and store.list_gold() == []
    assert [g.gold_id for g in store.list_gold(include_retired=True)] == [gold.gold_id]
    assert store.claim_gold("bob", 1, lease_seconds=60) == []
    with pytest.raises(NotFoundError):
        store.retire_gold(gold.gold_id)
    with pytest.raises(NotFoundError):
        store.add_gold("no-such-decision", "approve", None, "lead")


def test_exported_labels_say_how_two_verdicts_were_resolved(store: Store) -> None:
    agreed = first_verdict_drawn(store, "alice", "reject")
    store.claim("bob")
    store.record_second_review(agreed, "bob", "reject")
    disputed = first_verdict_drawn(store, "alice", "reject")
    store.claim("bob")
    store.record_second_review(disputed, "bob", "approve")
    (single,) = store.record_decisions([make_decision()])
    store.claim("carol")
    store.record_review(single.decision_id, "carol", "approve")

    labels = store.export_labels().set_index("decision_id")

    assert labels.loc[agreed, "label_source"] == "agreed" and labels.loc[agreed, "label"] == 1
    assert labels.loc[disputed, "label_source"] == "dawid_skene" and labels.loc[disputed, "label"] in (0, 1)
    assert labels.loc[single.decision_id, "label_source"] == "first_verdict"


def test_reviewer_activity_reads_every_kind_of_verdict_and_the_oldest_wait(store: Store, clock: FakeClock) -> None:
    decision_id = first_verdict_drawn(store, "alice", "reject")
    clock.advance(90)
    assert store.oldest_pending_age_seconds("second") == 90.0 and store.oldest_pending_age_seconds("audit") is None
    store.claim("bob")
    store.record_second_review(decision_id, "bob", "reject", "counterfeit", 15.0)
    (source,) = store.record_decisions([make_decision()])
    store.add_gold(source.decision_id, "approve", None, "lead")
    (gold,) = store.claim_gold("carol", 1, lease_seconds=60)
    store.answer_gold(gold.decision_id, "carol", "reject", "counterfeit", 5.0)

    verdicts = store.reviewer_verdicts(since=clock.now - timedelta(hours=1), until=clock.now + timedelta(seconds=1))

    assert sorted(zip(verdicts["reviewer"], verdicts["kind"], verdicts["correct"], strict=True)) == [
        ("alice", "review", None),
        ("bob", "second", None),
        ("carol", "gold", False),
    ]
    pairs = store.second_review_pairs()
    assert pairs[["first_reviewer", "second_reviewer", "second_verdict"]].values.tolist() == [
        ["alice", "bob", "reject"]
    ]
    assert store.reviewer_verdicts(since=clock.now + timedelta(seconds=1)).empty


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_quality_columns_are_added_to_tables_of_the_earlier_layout(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'old.db'}"
    metadata = MetaData()
    old_keys = Table("api_keys", metadata, *(c for c in _columns_of(schema.api_keys) if c.name != "team"))
    Table(
        "review_queue",
        metadata,
        *(c for c in _columns_of(schema.queue) if c.name not in ("first_reviewer", "second_review_rate")),
    )
    Table("decisions", metadata, *_columns_of(schema.decisions))
    engine = create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    row = {"key_id": "k1", "name": "old", "scopes": "review", "key_hash": "x", "created_at": clock.now}
    write_rows(url, old_keys, [{**row, "revoked": False}])

    with store_opener(url, None, clock) as open_store:
        store = open_store()
        store.insert_api_key("k2", "new", ["review"], "y", team="vendor-a")
        first_verdict_drawn(store)

        assert {k.name: k.team for k in store.list_api_keys()} == {"old": None, "new": "vendor-a"}
        assert store.reviewer_teams() == {"new": "vendor-a"}
        assert store.claim("bob")[0].first_reviewer == "alice"


def test_a_correction_outranks_the_resolution_of_two_verdicts(store: Store) -> None:
    disputed = first_verdict_drawn(store, "alice", "reject")
    store.claim("bob")
    store.record_second_review(disputed, "bob", "approve")
    previous = store.verdict_in_force(disputed)
    assert previous is not None
    store.record_correction(previous, "lead", "reject", "prohibited_item", "checked the seller's licence")

    (row,) = store.export_labels().to_dict("records")

    assert (row["label_source"], row["label"], row["violation_reason"]) == ("correction", 1, "prohibited_item")


def test_a_resolution_that_turns_the_first_verdict_takes_the_matching_reason() -> None:
    from features.config import DataConfig
    from serving.store.reviewer_activity import with_label_sources

    config = DataConfig()
    frame = pd.DataFrame(
        {
            "decision_id": ["to-reject", "to-approve", "kept", "corrected"],
            config.label: [0, 1, 1, 0],
            config.violation_reason: [None, "counterfeit", "counterfeit", None],
            "corrected": [False, False, False, True],
        }
    )
    resolved = {
        "to-reject": (0.9, False, "prohibited_item"),
        "to-approve": (0.2, False, None),
        "kept": (0.7, False, None),
        "corrected": (0.95, False, "counterfeit"),
    }

    out = with_label_sources(frame, resolved, config).set_index("decision_id")

    assert out[config.label].to_dict() == {"to-reject": 1, "to-approve": 0, "kept": 1, "corrected": 0}
    assert out[config.violation_reason].fillna("").to_dict() == {
        "to-reject": "prohibited_item",
        "to-approve": "",
        "kept": "counterfeit",
        "corrected": "",
    }
    assert out["label_source"].tolist() == ["dawid_skene", "dawid_skene", "dawid_skene", "correction"]


def test_amended_verdicts_read_the_latest_correction_of_each_first_verdict(store: Store) -> None:
    decisions = store.record_decisions([make_decision(), make_decision(), make_decision()])
    store.claim("alice", n=3)
    for record in decisions:
        store.record_review(record.decision_id, "alice", "reject", "counterfeit")
    twice, once, _untouched = (record.decision_id for record in decisions)
    for by, verdict, reason in (("bob", "approve", None), ("lead", "reject", "prohibited_item")):
        previous = store.verdict_in_force(twice)
        assert previous is not None
        store.record_correction(previous, by, verdict, reason, "second look")
    previous = store.verdict_in_force(once)
    assert previous is not None
    store.record_correction(previous, "lead", "approve", None, "genuine item")

    amended = store.amended_verdicts().sort_values("verdict_in_force").values.tolist()

    assert amended == [["alice", "reject", "approve", "lead"], ["alice", "reject", "reject", "lead"]]
