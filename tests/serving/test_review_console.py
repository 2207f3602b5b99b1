"""The review console's API: claim with context, skip, reload, release; verdicts that must give a reason;
the reason catalogue and the policy excerpts."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bundle.load import Bundle
from decision.policy import Policy
from decision.rules import Rule
from features.builder import FeatureBuilder
from features.config import FEATURE_GROUPS, MARKETPLACE_TIERS, DataConfig
from serving.engine import DecisionEngine
from serving.reasons import (
    DEFAULT_POLICY_EXCERPTS,
    DEFAULT_REASON_CATALOGUE,
    OTHER_REASON,
    PolicyExcerpts,
    ReasonCatalogue,
    ReviewTextError,
    ReviewTexts,
    price_ratio_words,
)
from serving.review_context import review_context
from serving.store import ConflictError, NotFoundError, QueueItem, Store
from tests.serving.conftest import Api, FakeClock, listing_json, make_decision
from tests.serving.test_api_policy import put_policy

Serve = Callable[..., AbstractContextManager[Api]]


def _queue(api: Api, *listings: dict[str, Any]) -> list[str]:
    """Score listings in a regulated category (always human review); their decision ids."""
    items = api.batch([{**listing, "category": "health"} for listing in listings]).json()["items"]
    assert all(item["decision"] == "human_review" for item in items), items
    return [item["decision_id"] for item in items]


def _next(api: Api, headers: dict[str, str], *skip: str) -> dict[str, Any]:
    response = api.client.get("/v1/review/next", params={"skip": list(skip)}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_next_item_comes_with_everything_a_reviewer_reads(serve: Serve, bundle_dir: Path) -> None:
    cheap_luxury = listing_json(1, title="Gucci bag original", brand="Gucci", price=3.0, merchant_id="M-CONSOLE")
    with serve() as api:
        (decision_id,) = _queue(api, cheap_luxury)
        shown = _next(api, api.key("console-reviewer", "review"))
        feature_names = api.app.state.engine.bundle.feature_names

    item, context = shown["item"], shown["context"]
    assert item["decision_id"] == decision_id and item["claimed_by"] == "console-reviewer"
    assert context["lane"] == "review" and context["lease_expires_at"] == item["lease_expires_at"]
    assert context["listing"]["title"] == "Gucci bag original" and context["listing"]["category"] == "health"
    assert (context["title_column"], context["description_column"]) == ("title", "description")
    price = context["price"]
    assert price["price"] == 3.0 and price["category_median_price"] > 3.0
    assert price["ratio"] < 1 and price["words"].endswith("below the category's typical price")
    assert context["merchant"]["merchant_id"] == "M-CONSOLE" and context["merchant"]["prior_reviews"] == 0
    risk = context["risk"]
    assert risk["risk"] == item["decision"]["risk"] and risk["t_block"] == item["decision"]["t_block"]
    assert risk["decision"] == "human_review"
    assert [r["name"] for r in context["rules"]] == item["decision"]["rules_matched"]
    assert all(r["checks"] and r["action"] in ("review", "block") for r in context["rules"])
    assert "category is one of" in " ".join(r["checks"] for r in context["rules"])
    assert [r["signal"] for r in context["reasons"]] == [r["feature"] for r in item["decision"]["reasons"]]
    for reason in context["reasons"]:  # words, never a raw feature name
        assert not any(re.search(rf"\b{name}\b", reason["words"]) for name in feature_names), reason
    assert context["similar_available"] is True and len(context["similar_cases"]) <= 5
    assert all(c["verdict"] in ("approve", "reject") for c in context["similar_cases"])
    options = {o["reason"]: o for o in context["violation_reasons"]}
    assert {reason for tier in MARKETPLACE_TIERS for reason in tier.reasons} <= set(options)
    assert options["counterfeit"]["excerpt"] and options["counterfeit"]["title"] == "Counterfeit"


def test_an_audit_item_says_which_automated_decision_is_in_force(serve: Serve, tmp_path: Path) -> None:
    """Without a model nothing is scored: the context still shows the listing and what can be chosen."""
    with serve(bundle=str(tmp_path / "missing")) as api:
        _queue(api, listing_json(2))
        shown = _next(api, api.headers("review"))
        audit = make_decision(decision="auto_pass", automated=True, qa_sample=True, listing=listing_json(3))
        api.store.record_decisions([audit])
        (claimed,) = api.store.claim("audit-reviewer", 1, 60)  # the only pending item
        audit_context = review_context(claimed, api.app.state.engine, api.app.state.review_texts)

    context = shown["context"]
    assert context["risk"]["risk"] is None and context["risk"]["fallback_reason"] == "model_unavailable"
    assert context["price"] == {"price": 29.9, "category_median_price": None, "ratio": None, "words": ""}
    assert context["similar_available"] is False and context["similar_cases"] == []
    assert OTHER_REASON in [o["reason"] for o in context["violation_reasons"]]
    assert audit_context.lane == "audit"
    assert audit_context.lane_words == "audit of an automated decision in force: auto_pass"


def test_skip_release_and_reload(serve: Serve, tmp_path: Path) -> None:
    with serve(bundle=str(tmp_path / "missing")) as api:
        first, second = _queue(api, listing_json(10), listing_json(11))
        me, other = api.key("reviewer-a", "review"), api.key("reviewer-b", "review")
        a = _next(api, me)["item"]["decision_id"]
        b = _next(api, me, a)["item"]["decision_id"]  # skips a: released, not handed back now
        after_skip = api.store.get_queue_item(a)
        again = _next(api, me, b)["item"]["decision_id"]  # skips b: a comes back
        reload_mine = api.client.get(f"/v1/review/items/{again}", headers=me)
        reload_other = api.client.get(f"/v1/review/items/{again}", headers=other)
        reload_unknown = api.client.get("/v1/review/items/nope", headers=me)
        release_other = api.client.post(f"/v1/queue/{again}/release", headers=other)
        release_mine = api.client.post(f"/v1/queue/{again}/release", headers=me)
        release_twice = api.client.post(f"/v1/queue/{again}/release", headers=me)
        release_unknown = api.client.post("/v1/queue/nope/release", headers=me)
        claimed_by_other = _next(api, other)["item"]["decision_id"]
        skipped_back = _next(api, me)["item"]["decision_id"]  # b was released by the last skip
        empty = _next(api, me)
        reviewed = api.client.post(f"/v1/reviews/{claimed_by_other}", json={"verdict": "approve"}, headers=other)
        reload_reviewed = api.client.get(f"/v1/review/items/{claimed_by_other}", headers=other)

    assert {a, b} == {first, second} and again == a
    assert after_skip is not None and after_skip.status == "pending" and after_skip.claimed_by is None
    assert reload_mine.status_code == 200 and reload_mine.json()["item"]["decision_id"] == again
    assert reload_mine.json()["context"]["listing"]["title"] == "Leather wallet, brown"
    assert reload_other.status_code == 409 and "not leased to reviewer-b" in reload_other.json()["detail"]
    assert reload_unknown.status_code == 404
    assert release_other.status_code == 409 and release_unknown.status_code == 404
    assert release_mine.status_code == 200 and release_mine.json() == {"decision_id": again, "status": "pending"}
    assert release_twice.status_code == 409
    assert claimed_by_other == again  # released: first in line again
    assert skipped_back == b and empty == {"item": None, "context": None}
    assert reviewed.status_code == 200 and reload_reviewed.status_code == 409


def test_a_reject_needs_a_known_reason_and_keeps_the_note(serve: Serve, tmp_path: Path) -> None:
    with serve(bundle=str(tmp_path / "missing")) as api:
        decision_id, other_id = _queue(api, listing_json(20), listing_json(21))
        headers = api.headers("review")
        post = lambda body: api.client.post(f"/v1/reviews/{decision_id}", json=body, headers=headers)  # noqa: E731
        no_reason = post({"verdict": "reject"})
        unknown = post({"verdict": "reject", "violation_reason": "looked odd"})
        long_note = post({"verdict": "reject", "violation_reason": "counterfeit", "note": "x" * 2001})
        ok = post(
            {"verdict": "reject", "violation_reason": "counterfeit", "note": "logo misspelt", "review_seconds": 12}
        )
        other = api.client.post(
            f"/v1/reviews/{other_id}", json={"verdict": "reject", "violation_reason": "other"}, headers=headers
        )
        stored = api.store.get_review(decision_id)
        labels = api.store.export_labels()

    for refused in (no_reason, unknown):
        assert refused.status_code == 422
        (problem,) = refused.json()["detail"]
        assert problem["field"] == "violation_reason" and "counterfeit" in problem["msg"]
    assert long_note.status_code == 422 and long_note.json()["detail"][0]["field"] == "note"
    assert ok.status_code == 200 and ok.json()["note"] == "logo misspelt" and other.status_code == 200
    assert "(counterfeit)" in ok.json()["statement_of_reasons"]["facts_and_circumstances"]
    assert stored is not None and stored.note == "logo misspelt" and stored.violation_reason == "counterfeit"
    assert labels.set_index("listing_id").loc["L-20", "violation_reason"] == "counterfeit"


def test_release_gives_back_only_ones_own_lease(store: Store, clock: FakeClock) -> None:
    mine, theirs = make_decision(decision="human_review"), make_decision(decision="human_review")
    store.record_decisions([mine, theirs])
    store.claim("a", 1, 60)
    store.claim("b", 1, 60)
    held_by_a = "a" if store.get_queue_item(mine.decision_id).claimed_by == "a" else "b"  # type: ignore[union-attr]
    held_by_b = "b" if held_by_a == "a" else "a"

    with pytest.raises(ConflictError, match="not leased to"):
        store.release(mine.decision_id, held_by_b)
    store.release(mine.decision_id, held_by_a)
    released = store.get_queue_item(mine.decision_id)
    assert released is not None and (released.status, released.claimed_by, released.lease_expires_at) == (
        "pending",
        None,
        None,
    )
    clock.advance(120)  # an expired lease is still its holder's to give back while nobody took it
    store.release(theirs.decision_id, held_by_b)
    store.claim("c", 2, 60)
    store.record_review(theirs.decision_id, "c", "approve", note="fine")
    with pytest.raises(ConflictError, match="already reviewed"):
        store.release(theirs.decision_id, "c")
    with pytest.raises(NotFoundError):
        store.release("unknown", "a")
    review = store.get_review(theirs.decision_id)
    assert review is not None and review.note == "fine"


def test_every_feature_of_a_fresh_bundle_is_in_the_catalogue(bundle_dir: Path) -> None:
    catalogue = ReasonCatalogue.load()
    bundle = Bundle.load(bundle_dir)
    assert [name for name in bundle.feature_names if name not in catalogue] == []
    every_group = FeatureBuilder(DataConfig(), feature_groups=FEATURE_GROUPS)  # opt-in groups too
    assert [name for name in every_group.feature_names if name not in catalogue] == []
    assert {"repost_match", "catalogue_match"} <= set(catalogue.signals)


def test_signals_read_as_words() -> None:
    catalogue = ReasonCatalogue.load()
    listing = {"category": "Fashion", "seller_score": 3}

    def words(feature: str, value: float | None = None, **extra: object) -> str:
        return catalogue.describe({"feature": feature, "value": value, **extra}, listing)

    assert words("log_price_vs_category", -2.4849) == "price is 12x below the category's typical price"
    assert words("log_price_vs_category", 1.1) == "price is 3.0x above the category's typical price"
    assert words("prohibited_hits", 2.0) == "2 prohibited-item term(s) in the text"
    assert words("merchant_prior_reject_rate", 0.4567) == (
        "the merchant's reject rate is 46% (pulled toward the marketplace's rate while reviews are few)"
    )
    assert words("category_code", 4.0) == "the category: Fashion"
    assert words("repost_match", matched_listing_id="L-9", similarity=0.93) == (
        "re-post of rejected listing L-9 (93% of its text is the same)"
    )
    assert words("seller_score_code", 7.0) == "the seller score: 3"  # unknown names: words from the name
    assert words("new_signal_x", 0.25) == "new signal x: 0.25"
    assert price_ratio_words(1.1) == "about the same as"


def test_every_marketplace_reason_has_a_policy_excerpt() -> None:
    excerpts = PolicyExcerpts.load()
    for reason in {reason for tier in MARKETPLACE_TIERS for reason in tier.reasons} | {OTHER_REASON}:
        excerpt = excerpts.get(reason)
        assert excerpt is not None and excerpt.title and len(excerpt.text) > 80


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("reasons: [a, b]", "`reasons` must map names to entries"),
        ("reasons:\n  other: {title: Other, section: s}\n", "reasons.other: needs a non-empty text"),
        ("reasons:\n  fraud: {title: Fraud, section: s, text: t}\n", "needs an excerpt for `other`"),
        ("reasons: {other: [", "not valid YAML"),
    ],
)
def test_a_broken_excerpt_file_is_refused_naming_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "excerpts.yaml"
    path.write_text(text)
    with pytest.raises(ReviewTextError, match=re.escape(message)) as refused:
        PolicyExcerpts.load(path)
    assert str(path) in str(refused.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{text: 'gap {value}', value: furlongs}", "features.price_gap.value: 'furlongs' is not one of"),
        ("{text: 'gap {value'}", "features.price_gap.text: not a usable template"),
        ("{text: 'the {listing}'}", "features.price_gap: `{listing}` needs the `column` it reads"),
        ("{value: count}", "features.price_gap: needs a non-empty `text`"),
    ],
)
def test_a_broken_catalogue_entry_is_refused(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "reasons.yaml"
    path.write_text(f"features:\n  price_gap: {entry}\n")
    with pytest.raises(ReviewTextError, match=re.escape(message)):
        ReasonCatalogue.load(path)


def test_the_service_reads_the_excerpts_named_in_its_settings(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / "excerpts.yaml"
    path.write_text(
        DEFAULT_POLICY_EXCERPTS.read_text() + "  fraud:\n    title: Fraud\n    section: 'Policy 9'\n    text: Scams.\n"
    )
    with serve(bundle=str(tmp_path / "missing"), policy_excerpts=str(path)) as api:
        (decision_id,) = _queue(api, listing_json(30))
        shown = _next(api, api.headers("review"))
        fraud = api.client.post(
            f"/v1/reviews/{decision_id}",
            json={"verdict": "reject", "violation_reason": "fraud"},
            headers=api.headers("review"),
        )
    assert {"reason": "fraud", "title": "Fraud", "section": "Policy 9", "excerpt": "Scams."} in shown["context"][
        "violation_reasons"
    ]
    assert fraud.status_code == 200
    path.write_text("reasons: {}\n")
    with pytest.raises(ReviewTextError, match="policy excerpts"), serve(policy_excerpts=str(path)):
        pass
    assert DEFAULT_REASON_CATALOGUE.is_file()


def test_the_context_shows_each_tier_against_its_threshold_and_the_rules_in_words() -> None:
    """Built from the queue item alone: a decision the decisions table need not hold (e.g. a gold item)."""
    rules = [
        Rule(
            name="cheap_rolex",
            action="block",
            kind="all",
            all=[
                Rule(name="", action="", kind="term", terms=["rolex"], fields=["title"]),
                Rule(name="", action="", kind="range", column="price", max=100.0),
            ],
        ),
    ]
    policy = Policy(version="p-tiers", t_pass=0.1, t_block=0.9, tier_pass={"severe": 0.05, "minor": 0.2}, rules=rules)
    record = make_decision(
        tier_risk={"severe": 0.31, "minor": 0.02},
        decision_tier="severe",
        rules_matched=["cheap_rolex"],
        rules_shadow=["retired_rule"],
        reasons=[
            {
                "feature": "catalogue_match",
                "catalogue_entry_id": "C001",
                "catalogue_name": "signal jammer",
                "violation_reason": "prohibited_item",
            }
        ],
    )
    now = datetime.now(UTC)
    item = QueueItem(record.decision_id, 0.9, now, "claimed", "r", now, False, record, lane="review")
    texts = ReviewTexts.load(DEFAULT_REASON_CATALOGUE, DEFAULT_POLICY_EXCERPTS)

    context = review_context(item, DecisionEngine(bundle=None, policy=policy), texts)

    assert [(t.name, t.risk, t.t_pass) for t in context.risk.tiers] == [("severe", 0.31, 0.05), ("minor", 0.02, 0.2)]
    assert context.risk.decision_tier == "severe" and context.reasons == []
    assert [(r.name, r.action, r.mode, r.checks) for r in context.rules] == [
        ("cheap_rolex", "block", "enforce", "title contains any of: rolex and price is below 100"),
        ("retired_rule", "", "shadow", "no longer in the policy in force"),
    ]
    (match,) = context.product_matches
    assert match.kind == "catalogue" and match.catalogue_entry_id == "C001"
    assert match.words == 'the catalogue\'s known product "signal jammer" (C001, prohibited_item)'


def test_the_merchant_history_counts_verdicts_recorded_since_the_bundle(serve: Serve) -> None:
    """As scoring sees it: the bundle's snapshot (nothing for a new merchant) plus the verdicts recorded
    before the listing was created."""
    with serve() as api:
        put_policy(api, {"quality": {"second_review_rate": 0.0}})  # the verdict below never comes back blind
        (rejected_id,) = _queue(api, listing_json(40, merchant_id="M-NEW-CONSOLE"))
        reject = {"verdict": "reject", "violation_reason": "other"}
        recorded = api.client.post(f"/v1/reviews/{rejected_id}", json=reject, headers=api.headers("review"))
        later = listing_json(41, merchant_id="M-NEW-CONSOLE", created_at=datetime.now(UTC).isoformat())
        (later_id,) = _queue(api, later)
        shown = _next(api, api.key("merchant-reviewer", "review"))  # the only pending item

    assert recorded.status_code == 200 and shown["item"]["decision_id"] == later_id
    merchant = shown["context"]["merchant"]
    assert (merchant["prior_reviews"], merchant["prior_rejects"], merchant["reject_rate"]) == (1, 1, 1.0)
    assert merchant["days_since_last_reject"] is not None and merchant["days_since_last_reject"] < 1
