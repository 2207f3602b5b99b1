"""Review queue over HTTP: leased claims, expiry, verdicts, DSA statements, labels for retraining."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.config import DataConfig
from features.validate import validate_history
from tests.serving.conftest import Api, listing_json


def fill_queue(api: Api, n: int) -> list[str]:
    """Score n listings without a model: all go to the queue. Returns their decision ids."""
    items = api.batch([listing_json(i, created_at="2025-10-01T00:00:00Z") for i in range(n)]).json()["items"]
    assert all(i["decision"] == "human_review" for i in items)
    return [i["decision_id"] for i in items]


@pytest.fixture
def no_model(tmp_path: Path) -> dict[str, object]:
    return {"bundle": str(tmp_path / "missing")}


def test_claims_come_in_priority_order_with_a_lease_to_the_key_name(serve, no_model) -> None:
    with serve(**no_model) as api:
        ids = fill_queue(api, 3)
        claimed = api.client.get("/v1/queue/next?n=2", headers=api.headers("review")).json()["items"]
        rest = api.client.get("/v1/queue/next", headers=api.headers("review")).json()["items"]
        empty = api.client.get("/v1/queue/next", headers=api.headers("review")).json()["items"]
        stats = api.client.get("/v1/queue/stats", headers=api.headers("review")).json()

    assert len(claimed) == 2 and len(rest) == 1 and empty == []
    assert {c["decision_id"] for c in claimed + rest} == set(ids)
    assert all(c["claimed_by"] == "review-key" and c["lease_expires_at"] for c in claimed)
    assert claimed[0]["listing"]["listing_id"].startswith("L-")
    none_waits = {"pending": 0, "oldest_pending_age_seconds": None}
    assert stats == {
        **none_waits,
        "claimed": 3,
        "done": 0,
        "lanes": {
            "review": {**none_waits, "claimed": 3, "done": 0},
            "audit": {**none_waits, "claimed": 0, "done": 0},
            "second": {**none_waits, "claimed": 0, "done": 0},
        },
    }
    assert {c["lane"] for c in claimed + rest} == {"review"}


def test_queue_routes_need_the_review_scope(serve, no_model) -> None:
    with serve(**no_model) as api:
        assert api.client.get("/v1/queue/next").status_code == 401
        assert api.client.get("/v1/queue/next", headers=api.headers("score")).status_code == 403
        assert api.client.get("/v1/queue/next", headers=api.headers("admin")).status_code == 200
        assert api.client.get("/v1/queue/next?n=0", headers=api.headers("review")).status_code == 422
        assert api.client.get("/v1/queue/next?n=1000", headers=api.headers("review")).status_code == 422


def test_concurrent_claims_never_give_one_item_to_two_reviewers(serve, no_model) -> None:
    with serve(**no_model) as api:
        fill_queue(api, 40)
        reviewers = [api.key(f"reviewer-{r}", "review") for r in range(8)]

        def claim_all(headers: dict[str, str]) -> list[str]:
            got: list[str] = []
            while True:
                items = api.client.get("/v1/queue/next?n=3", headers=headers).json()["items"]
                if not items:
                    return got
                got += [i["decision_id"] for i in items]

        with ThreadPoolExecutor(8) as pool:
            claims = list(pool.map(claim_all, reviewers))

    everything = [d for got in claims for d in got]
    assert len(everything) == len(set(everything)) == 40


def test_an_expired_lease_comes_back_to_the_queue(serve, no_model) -> None:
    with serve(lease_seconds=1, **no_model) as api:
        (decision_id,) = fill_queue(api, 1)
        first = api.client.get("/v1/queue/next", headers=api.key("alice", "review")).json()["items"]
        bob = api.key("bob", "review")
        while_leased = api.client.get("/v1/queue/next", headers=bob).json()["items"]
        time.sleep(1.1)
        after_expiry = api.client.get("/v1/queue/next", headers=bob).json()["items"]

    assert [i["decision_id"] for i in first] == [decision_id]
    assert while_leased == []
    assert [i["decision_id"] for i in after_expiry] == [decision_id] and after_expiry[0]["claimed_by"] == "bob"


def test_verdicts_are_recorded_and_a_rejection_carries_a_non_automated_dsa_statement(serve, no_model) -> None:
    with serve(**no_model) as api:
        approve_id, reject_id = fill_queue(api, 2)
        headers = api.headers("review")
        approved = api.client.post(
            f"/v1/reviews/{approve_id}", json={"verdict": "approve", "review_seconds": 31.5}, headers=headers
        )
        rejected = api.client.post(
            f"/v1/reviews/{reject_id}", json={"verdict": "reject", "violation_reason": "counterfeit"}, headers=headers
        )
        stored = api.store.get_review(reject_id)

    assert approved.status_code == 200 and approved.json()["statement_of_reasons"] is None
    assert rejected.status_code == 200, rejected.text
    statement = rejected.json()["statement_of_reasons"]
    assert statement["automated_decision"] is False and statement["puid"] == reject_id
    assert statement["category"] == "intellectual_property_infringements"
    assert "rejected by a reviewer (counterfeit)" in statement["facts_and_circumstances"]
    assert stored is not None and stored.reviewer == "review-key" and stored.statement_of_reasons == statement


def test_review_errors_are_404_409_and_422(serve, no_model) -> None:
    with serve(**no_model) as api:
        decision_id, leased_id = fill_queue(api, 2)
        headers = api.headers("review")
        ok = {"verdict": "approve"}
        unknown = api.client.post("/v1/reviews/nope", json=ok, headers=headers)
        first = api.client.post(f"/v1/reviews/{decision_id}", json=ok, headers=headers)
        twice = api.client.post(f"/v1/reviews/{decision_id}", json=ok, headers=headers)
        api.client.get("/v1/queue/next", headers=api.key("carol", "review"))  # carol leases the other one
        not_yours = api.client.post(f"/v1/reviews/{leased_id}", json=ok, headers=headers)
        bad_verdict = api.client.post(f"/v1/reviews/{leased_id}", json={"verdict": "maybe"}, headers=headers)
        bad_seconds = api.client.post(
            f"/v1/reviews/{leased_id}", json={"verdict": "approve", "review_seconds": -1}, headers=headers
        )
        # an approval with a reason was stored and exported as label 0 with a violation type
        approved_with_reason = api.client.post(
            f"/v1/reviews/{leased_id}", json={"verdict": "approve", "violation_reason": "counterfeit"}, headers=headers
        )

    assert unknown.status_code == 404
    assert first.status_code == 200 and twice.status_code == 409
    assert not_yours.status_code == 409 and "leased" in not_yours.json()["detail"]
    assert bad_verdict.status_code == 422 and bad_verdict.json()["detail"][0]["field"] == "verdict"
    assert bad_seconds.status_code == 422 and bad_seconds.json()["detail"][0]["field"] == "review_seconds"
    assert approved_with_reason.status_code == 422, approved_with_reason.text
    assert approved_with_reason.json()["detail"][0]["field"] == "violation_reason"
    assert "an approval has no violation_reason" in approved_with_reason.text


def put_policy(api: Api, reason: str, **body: object) -> None:
    response = api.client.put("/v1/policy", json={**body, "reason": reason}, headers=api.headers("admin"))
    assert response.status_code == 200, response.text


def pass_everything(api: Api, **audit: Any) -> None:
    """Thresholds that pass every listing (tiers too), no rules; audit rates as given."""
    tiers = dict.fromkeys(api.app.state.engine.tier_names, 0.999)
    put_policy(api, "pass all", t_pass=0.999, t_block=1.0, tier_pass=tiers, rules=[], replace_rules=True, **audit)


def block_everything(api: Api, **audit: Any) -> None:
    """Thresholds that block every listing the model scores (risk >= 1e-6), no rules."""
    tiers = dict.fromkeys(api.app.state.engine.tier_names, 0.0)
    put_policy(api, "block all", t_pass=0.0, t_block=1e-6, tier_pass=tiers, rules=[], replace_rules=True, **audit)


EVERYTHING_AUDITED = {"qa_sample_rate": 1.0, "audit": {"near_rate": 1.0, "block_rate": 1.0}}


def test_an_auto_decision_not_drawn_for_audit_cannot_be_reviewed(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        pass_everything(api, qa_sample_rate=0.001, audit={"near_rate": 0.001, "block_rate": 0.001})
        items = api.batch([listing_json(i) for i in range(20)]).json()["items"]
        item = next(i for i in items if not i["qa_sample"])  # all 20 drawn at 0.1%: about 1e-60
        response = api.client.post(
            f"/v1/reviews/{item['decision_id']}", json={"verdict": "approve"}, headers=api.headers("review")
        )

    assert item["decision"] == "auto_pass" and item["inclusion_prob"] == pytest.approx(0.001)
    assert response.status_code == 409


def test_an_audited_auto_pass_stays_in_force_and_a_rejection_overturns_it(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        pass_everything(api, **EVERYTHING_AUDITED)
        item = api.score(listing_json(1)).json()
        confirmed = api.score(listing_json(2)).json()
        claimed = api.client.get("/v1/queue/next?n=10", headers=api.headers("review")).json()["items"]
        stats = api.client.get("/v1/queue/stats", headers=api.headers("review")).json()
        headers = api.headers("review")
        rejected = api.client.post(
            f"/v1/reviews/{item['decision_id']}",
            json={"verdict": "reject", "violation_reason": "counterfeit"},
            headers=headers,
        ).json()
        approved = api.client.post(
            f"/v1/reviews/{confirmed['decision_id']}", json={"verdict": "approve"}, headers=headers
        ).json()
        metrics = api.client.get("/metrics").text

    assert (item["decision"], item["automated"], item["qa_sample"]) == ("auto_pass", True, True)
    assert item["inclusion_prob"] == 1.0 and item["would_have_been"] is None
    assert {c["decision_id"]: c["lane"] for c in claimed} == {
        item["decision_id"]: "audit",
        confirmed["decision_id"]: "audit",
    }
    assert {c["decision"]["decision"] for c in claimed} == {"auto_pass"}
    assert stats["lanes"]["audit"]["claimed"] == 2 and stats["lanes"]["review"] == {
        "pending": 0,
        "claimed": 0,
        "done": 0,
        "oldest_pending_age_seconds": None,
    }
    assert rejected["overturn"] is True
    statement = rejected["statement_of_reasons"]
    assert statement["automated_decision"] is False and statement["restriction"] == "listing_removed"
    assert statement["category"] == "intellectual_property_infringements"
    assert "overturned" in statement["facts_and_circumstances"]
    assert approved["overturn"] is False and approved["statement_of_reasons"] is None
    assert 'triage_audit_overturns_total{decision="auto_pass"} 1.0' in metrics


def test_an_audit_approving_an_auto_block_lifts_it_with_a_statement(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        block_everything(api, **EVERYTHING_AUDITED)
        item = api.score(listing_json(1)).json()
        api.client.get("/v1/queue/next", headers=api.headers("review"))
        review = api.client.post(
            f"/v1/reviews/{item['decision_id']}", json={"verdict": "approve"}, headers=api.headers("review")
        ).json()
        stored = api.store.get_review(item["decision_id"])
        metrics = api.client.get("/metrics").text

    assert (item["decision"], item["qa_sample"], item["inclusion_prob"]) == ("auto_block", True, 1.0)
    assert item["statement_of_reasons"]["automated_decision"] is True  # the block is in force meanwhile
    assert review["overturn"] is True and stored is not None and stored.overturn is True
    lifted = review["statement_of_reasons"]
    assert lifted["restriction"] == "restriction_lifted" and lifted["automated_decision"] is False
    assert lifted["puid"] == item["decision_id"] and "block is lifted" in lifted["facts_and_circumstances"]
    assert stored.statement_of_reasons == lifted
    assert 'triage_audit_overturns_total{decision="auto_block"} 1.0' in metrics


def test_a_review_verdict_is_never_an_overturn(serve, no_model) -> None:
    with serve(**no_model) as api:
        (decision_id,) = fill_queue(api, 1)
        review = api.client.post(
            f"/v1/reviews/{decision_id}",
            json={"verdict": "reject", "violation_reason": "other"},
            headers=api.headers("review"),
        ).json()

    assert review["overturn"] is None and review["statement_of_reasons"]["restriction"] == "listing_removed"


def test_an_overdue_audit_is_claimed_before_a_higher_priority_review(serve, own_bundle: Path) -> None:
    """The age limit is the policy's audit.max_age_hours: set small, the audit is overdue at once."""
    with serve(bundle=str(own_bundle)) as api:
        pass_everything(api, **EVERYTHING_AUDITED)
        audit = api.score(listing_json(1)).json()
        tiers = dict.fromkeys(api.app.state.engine.tier_names, 0.0)
        put_policy(
            api,
            "review all, audits due at once",
            t_pass=0.0,
            t_block=1.0,
            tier_pass=tiers,
            audit={"max_age_hours": 1e-6},
        )
        review = api.score(listing_json(2, title="Rolex replica watch", price=20.0)).json()
        first = api.client.get("/v1/queue/next", headers=api.headers("review")).json()["items"]

    assert review["decision"] == "human_review" and review["priority"] > audit["priority"]
    assert [(i["decision_id"], i["lane"]) for i in first] == [(audit["decision_id"], "audit")]


def test_exported_labels_are_accepted_by_training_validation(
    serve, no_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.commands import export_labels
    from serving.settings import get_settings

    with serve(**no_model) as api:
        ids = fill_queue(api, 6)
        again = api.score(listing_json(0, title="edited title")).json()  # the same listing scored again
        headers = api.headers("review")
        for n, decision_id in enumerate([*ids, again["decision_id"]]):
            verdict = {"verdict": "reject", "violation_reason": "counterfeit"} if n % 2 else {"verdict": "approve"}
            assert (
                api.client.post(
                    f"/v1/reviews/{decision_id}", json={**verdict, "review_seconds": 40.0}, headers=headers
                ).status_code
                == 200
            )
        database_url = str(api.store.url)

    monkeypatch.setenv("TRIAGE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        for name in ("labels.parquet", "labels.csv"):
            export_labels(tmp_path / name)
            frame = pd.read_parquet(tmp_path / name) if name.endswith("parquet") else pd.read_csv(tmp_path / name)
            history = validate_history(frame, DataConfig())
            assert len(history) == 6  # L-0's older verdict is superseded by the newer one
            assert history["label"].sum() == 3
    finally:
        get_settings.cache_clear()
