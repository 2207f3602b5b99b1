"""Live merchant history in the service: verdicts logged as merchant outcomes in their own transaction,
applied in memory at once by the process that records them and by refresh in the others, and scored
with exactly the point-in-time features training computes from the same outcomes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete

from bundle.load import Bundle
from features.merchant import MERCHANT_FEATURES, MerchantUpdates, merchant_history
from features.validate import load_table, validate_history
from serving.engine import DecisionEngine
from serving.merchant_history import COMMIT_GRACE, apply_outcome, engine_updates, refresh
from serving.models import load_engine
from serving.store import ConflictError, Store, create_store, schema
from serving.store.merchant_outcomes import MerchantOutcome
from tests.serving.conftest import FakeClock, listing_json, make_decision
from tests.serving.test_api_policy import put_policy


def queue_listing(store: Store, merchant: str | None, created: datetime) -> str:
    """Log a human_review decision for a listing of `merchant`; returns its decision id."""
    listing = {**make_decision().listing, "created_at": created.isoformat()}
    if merchant is None:
        del listing["merchant_id"]
    else:
        listing["merchant_id"] = merchant
    record = make_decision(listing=listing)
    store.record_decisions([record])
    return record.decision_id


def review(store: Store, clock: FakeClock, merchant: str | None, verdict: str) -> str:
    """A listing of `merchant`, queued an hour ago, given `verdict` now."""
    decision_id = queue_listing(store, merchant, clock.now - timedelta(hours=1))
    store.record_review(decision_id, "alice", verdict, "counterfeit" if verdict == "reject" else None)
    return decision_id


def test_a_verdict_logs_its_merchant_outcome_in_the_same_transaction(store: Store, clock: FakeClock) -> None:
    first = review(store, clock, "M1", "approve")
    approved_at = clock.now
    clock.advance(60)
    second = review(store, clock, "M2", "reject")
    review(store, clock, None, "reject")  # no merchant: the verdict stands, no merchant outcome
    with pytest.raises(ConflictError):
        store.record_review(first, "bob", "reject")

    assert store.merchant_outcomes_after(None) == [
        MerchantOutcome(first, "M1", approved_at, False),
        MerchantOutcome(second, "M2", clock.now, True),
    ]
    assert [o.decision_id for o in store.merchant_outcomes_after(approved_at)] == [second]


def test_a_verdict_whose_outcome_cannot_be_logged_is_not_stored(
    store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision_id = queue_listing(store, "M1", clock.now)

    def broken(conn: Any, review: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_log_merchant_outcome", broken)
    with pytest.raises(RuntimeError):
        store.record_review(decision_id, "alice", "reject")
    assert store.get_review(decision_id) is None and store.queue_counts()["pending"] == 1
    assert store.merchant_outcomes_after(None) == []


def test_the_recording_process_gets_the_outcome_after_commit_and_a_failing_listener_costs_nothing(
    store: Store, clock: FakeClock
) -> None:
    received: list[MerchantOutcome] = []
    store.merchant_listener = received.append
    decision_id = review(store, clock, "M7", "reject")
    assert received == [MerchantOutcome(decision_id, "M7", clock.now, True)]

    def failing(outcome: MerchantOutcome) -> None:
        raise RuntimeError("listener bug")

    store.merchant_listener = failing
    other = review(store, clock, "M7", "approve")
    assert store.get_review(other) is not None and len(store.merchant_outcomes_after(None)) == 2


def test_refresh_brings_other_workers_verdicts_once_within_the_commit_grace(
    store_factory: Callable[..., Store], clock: FakeClock
) -> None:
    here, there = store_factory(), store_factory()
    updates = MerchantUpdates(since_us=0)
    assert refresh(updates, here) == 0
    for verdict in ("reject", "reject", "approve"):
        clock.advance(30)
        review(there, clock, "M1", verdict)
    assert refresh(updates, here) == 3
    assert refresh(updates, here) == 0  # read again inside the grace window, counted once

    late_clock, stale_clock = FakeClock(), FakeClock()
    late_clock.now = clock.now - COMMIT_GRACE / 2  # reviewed before the latest seen, committed now
    stale_clock.now = clock.now - 2 * COMMIT_GRACE  # committed later than the documented bound
    review(store_factory(clock=late_clock), late_clock, "M1", "reject")
    review(store_factory(clock=stale_clock), stale_clock, "M1", "reject")
    assert refresh(updates, here) == 1
    after_all = int((clock.now - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) + 1
    counted = updates.counts(["M1"], [after_all])
    assert (counted.reviews[0], counted.rejects[0]) == (4, 3)


def test_online_merchant_features_equal_offline_point_in_time_features(
    store_factory: Callable[..., Store], clock: FakeClock, bundle_dir: Path, generated_dir: Path
) -> None:
    here, other_worker = store_factory(), store_factory()
    engine = load_engine(bundle_dir, store=here)
    assert engine.bundle is not None
    builder, config = engine.bundle.builder, engine.bundle.config
    history = validate_history(load_table(generated_dir / "reviews.parquet", config), config)
    assert builder.snapshot is not None and builder.snapshot["reviews"].sum() == len(history)  # its outcomes
    here.merchant_listener = lambda outcome: apply_outcome(engine, outcome)  # as the app wires it

    clock.now = history["reviewed_at"].max().tz_localize(UTC).to_pydatetime() + timedelta(days=2)
    known = str(history["merchant_id"].value_counts().index[0])
    plan = [(known, "reject", here), ("NEW-1", "reject", here), (known, "approve", other_worker)]
    plan += [("NEW-1", "reject", other_worker), ("NEW-1", "approve", here), (known, "reject", here)]
    verdict_times = []
    for merchant, verdict, store in plan:
        clock.advance(600)
        review(store, clock, merchant, verdict)
        verdict_times.append(clock.now)
    updates = engine_updates(engine)
    assert updates is not None and refresh(updates, here) == 2  # the other worker's two

    one_us = timedelta(microseconds=1)
    created = [verdict_times[0] - timedelta(minutes=1), *verdict_times, *(t + one_us for t in verdict_times)]
    listings = [
        listing_json(i, merchant_id=merchant, created_at=at.isoformat())
        for i, (merchant, at) in enumerate((m, t) for m in (known, "NEW-1", "NEW-2") for t in created)
    ]
    columns = [builder.feature_names.index(name) for name in MERCHANT_FEATURES]
    online = builder.transform_records(listings)[:, columns]

    exported = here.export_labels(config)
    outcomes = pd.concat(
        [
            history[["merchant_id", "created_at", "reviewed_at", "label"]],
            exported[["merchant_id", "created_at", "reviewed_at", "label"]].assign(
                created_at=lambda f: f["created_at"].dt.tz_localize(None),
                reviewed_at=lambda f: f["reviewed_at"].dt.tz_localize(None),
            ),
        ],
        ignore_index=True,
    )
    frame = pd.DataFrame(listings)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, format="ISO8601").dt.tz_localize(None)
    offline = merchant_history(frame, outcomes, config).to_numpy(np.float32)
    np.testing.assert_array_equal(online, offline)

    frozen = Bundle.load(bundle_dir).builder.transform_records(listings)[:, columns]
    reviews = pd.DataFrame(online[:, :2], columns=["reviews", "rejects"]).assign(merchant=frame["merchant_id"])
    new_one = reviews[reviews["merchant"] == "NEW-1"]["reviews"]
    assert new_one.iloc[0] == 0 and new_one.iloc[-1] == 3  # unknown at training, then its verdicts count
    assert (reviews[reviews["merchant"] == "NEW-2"]["reviews"] == 0).all()
    # created before (or at) the first verdict: the snapshot's features; after it, the prior moved, NEW-2's too
    unchanged = np.tile(np.arange(len(created)) < 2, 3)
    np.testing.assert_array_equal(online[unchanged], frozen[unchanged])
    assert (online[~unchanged, 2] != frozen[~unchanged, 2]).all()
    assert online[len(created) - 1, 1] == frozen[0, 1] + 2  # the known merchant: two rejections since


def test_rejections_through_the_review_api_raise_the_merchants_prior_rejects(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle), merchant_refresh_seconds=0.2) as api:
        engine: DecisionEngine = api.app.state.engine
        tiers = {name: 0.0 for name in engine.tier_names}
        changed = put_policy(api, {"t_pass": 0.0, "t_block": 1.0, "qa_sample_rate": 0.001, "tier_pass": tiers or None})
        assert changed.status_code == 200, changed.text

        def now_listing(i: int, merchant: str) -> dict[str, Any]:
            return listing_json(i, merchant_id=merchant, created_at=datetime.now(UTC).isoformat())

        def merchant_features(listing: dict[str, Any]) -> dict[str, float]:
            builder = api.app.state.engine.bundle.builder
            row = builder.transform_records([listing])[0]
            return {name: float(row[builder.feature_names.index(name)]) for name in MERCHANT_FEATURES}

        scored = [api.score(now_listing(i, "M-REPEAT")).json() for i in range(3)]
        assert [s["decision"] for s in scored] == ["human_review"] * 3
        before = merchant_features(now_listing(10, "M-REPEAT"))
        claimed = api.client.get("/v1/queue/next?n=3", headers=api.headers("review")).json()["items"]
        for item in claimed:
            verdict = {"verdict": "reject", "violation_reason": "counterfeit"}
            response = api.client.post(
                f"/v1/reviews/{item['decision_id']}", json=verdict, headers=api.headers("review")
            )
            assert response.status_code == 200, response.text
        next_listing = now_listing(11, "M-REPEAT")
        after = merchant_features(next_listing)
        live = api.score(next_listing).json()
        expected_risk = api.app.state.engine.score([next_listing]).risk[0]

        # another worker's verdicts (a second store on the same database) arrive by the periodic refresh
        api.score(now_listing(20, "M-ELSEWHERE"))
        elsewhere = [
            i["decision_id"]
            for i in api.client.get("/v1/queue/next?n=5", headers=api.headers("review")).json()["items"]
            if i["listing"]["merchant_id"] == "M-ELSEWHERE"
        ]
        with create_store(api.app.state.settings.database_url) as worker:
            worker.record_review(elsewhere[0], "review-key", "reject")
        deadline = time.monotonic() + 10
        while merchant_features(now_listing(21, "M-ELSEWHERE"))["merchant_prior_rejects"] == 0:
            assert time.monotonic() < deadline, "the refresh never brought the other worker's verdict"
            time.sleep(0.05)

    assert before["merchant_prior_rejects"] == 0 and before["merchant_prior_reviews"] == 0
    assert after["merchant_prior_rejects"] == 3 and after["merchant_prior_reviews"] == 3
    assert after["merchant_prior_reject_rate"] > before["merchant_prior_reject_rate"]
    assert live["risk"] == pytest.approx(expected_risk, abs=1e-6)  # the API scored the live features
    frozen = DecisionEngine.from_bundle(Bundle.load(own_bundle)).score([next_listing]).risk[0]
    assert live["risk"] > frozen  # three rejections make the merchant's next listing riskier


def test_verdicts_recorded_before_the_table_existed_are_backfilled_once(
    store_factory: Callable[..., Store], clock: FakeClock
) -> None:
    store, other = store_factory(), store_factory()
    before_upgrade = []
    for merchant in ("M1", "M2"):
        clock.advance(1)  # outcomes come back in review-time order
        before_upgrade.append(review(store, clock, merchant, "reject"))
    review(store, clock, None, "approve")  # no merchant: nothing to backfill, ever
    with store._write_engine.begin() as conn:  # the verdicts of a log written before merchant_outcomes
        conn.execute(delete(schema.merchant_outcomes))
    clock.advance(60)
    after_upgrade = review(store, clock, "M1", "approve")

    assert store.backfill_merchant_outcomes(None) == 2
    assert other.backfill_merchant_outcomes(None) == 0  # a second worker finds nothing left
    outcomes = store.merchant_outcomes_after(None)
    assert [o.decision_id for o in outcomes] == [*before_upgrade, after_upgrade]
    assert [(o.merchant_id, o.rejected) for o in outcomes] == [("M1", True), ("M2", True), ("M1", False)]
