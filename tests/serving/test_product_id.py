"""Product identification in the service: the bundle's index, re-post and match rules in decisions,
reject verdicts reaching the index (and surviving a restart), similar past cases, failing safe."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bundle.load import Bundle
from bundle.manifest import read_manifest, write_manifest
from decision.rules import Rule
from features.config import DataConfig
from features.identify import IDENTIFY_DIR, build_identifier
from serving.engine import SCORING_ERROR, DecisionEngine, fallback_scores
from serving.store import Store
from tests.serving.conftest import Api, FakeClock, listing_json, make_decision

# A listing no generated one resembles, which the prohibited-term rule sends to review.
ODD = {
    "title": "Zanzibar heirloom switchblade with engraved walnut handle",
    "description": "Quokka pattern inlay, hand forged by Oswaldo in Tromso. Collectors only.",
    "brand": "Oswaldo Forge",
}


def repost_reasons(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in item["reasons"] if r["feature"] == "repost_match"]


def test_the_bundle_ships_the_product_index_under_its_manifest(bundle_dir: Path) -> None:
    files = read_manifest(bundle_dir)["files"]
    assert {f"{IDENTIFY_DIR}/rejects.npz", f"{IDENTIFY_DIR}/reviewed.npz", f"{IDENTIFY_DIR}/identify.json"} <= set(
        files
    )
    bundle = Bundle.load(bundle_dir)
    assert bundle.identifier is not None and len(bundle.identifier.rejects) > 0
    assert len(bundle.identifier.reviewed) > len(bundle.identifier.rejects)
    assert {r.name for r in bundle.policy.rules} >= {"repost_of_rejected", "catalogue_prohibited"}


def test_a_bundle_without_the_index_still_scores(bundle_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))
    shutil.rmtree(copy / IDENTIFY_DIR)
    write_manifest(copy)
    bundle = Bundle.load(copy)
    assert bundle.identifier is None
    engine = DecisionEngine.from_bundle(bundle, seed=0)
    listing = listing_json(1, **ODD)
    [record] = engine.decide_safely([listing], engine.score([listing]))
    assert record.fallback_reason is None and record.rules_matched == ["prohibited_term"]
    assert build_identifier(pd.DataFrame({"listing_id": ["a"], "label": [1]}), DataConfig(text=()), None) is None


def test_a_match_rule_routes_as_configured_and_names_the_matched_listing(bundle_dir: Path) -> None:
    bundle = Bundle.load(bundle_dir)
    block_reposts = Rule(name="repost_block", action="block", kind="match", values=["repost"])
    engine = DecisionEngine.from_bundle(bundle, replace(bundle.policy, rules=[block_reposts]), seed=0)
    assert bundle.identifier is not None
    rejected = listing_json(1, listing_id="L-rej", **ODD)
    day_before = int(pd.Timestamp(rejected["created_at"]).value // 1_000) - 86_400 * 1_000_000
    bundle.identifier.add_verdicts([rejected], "listing_id", ["reject"], ["prohibited_item"], [day_before])
    repost = listing_json(  # the same seller, the title reworded and obfuscated
        1, listing_id="L-again", **{**ODD, "title": "Zanzibar heirloom sw1tchblade, engraved walnut handle"}
    )
    other = listing_json(3, listing_id="L-other")
    records = engine.decide_safely([repost, other], engine.score([repost, other]))
    assert records[0].decision == "auto_block" and records[0].rules_matched == ["repost_block"]
    [reason] = [r for r in records[0].reasons if r["feature"] == "repost_match"]
    assert reason["matched_listing_id"] == "L-rej" and 0.5 < reason["similarity"] <= 1.0
    assert "repost_block" not in records[1].rules_matched


def test_a_failing_identification_sends_the_listing_to_review(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = Bundle.load(bundle_dir)
    engine = DecisionEngine.from_bundle(bundle, seed=0)
    assert bundle.identifier is not None

    def broken(records: list[dict[str, Any]]) -> list[Any]:
        raise RuntimeError("index unreadable")

    monkeypatch.setattr(bundle.identifier, "identify_records", broken)
    listing = listing_json(4)  # a listing the model alone would pass
    [record] = engine.decide_safely([listing], engine.score([listing]))
    assert record.decision == "human_review" and record.fallback_reason == SCORING_ERROR
    assert fallback_scores(1, SCORING_ERROR).fallback_reason == SCORING_ERROR


def reject(api: Api, listing_id: str) -> str:
    scored = api.score(listing_json(0, listing_id=listing_id, **ODD))
    assert scored.status_code == 200, scored.text
    item = scored.json()
    assert item["decision"] == "human_review" and repost_reasons(item) == []
    verdict = api.client.post(
        f"/v1/reviews/{item['decision_id']}",
        json={"verdict": "reject", "violation_reason": "prohibited_item"},
        headers=api.headers("review"),
    )
    assert verdict.status_code == 200, verdict.text
    return str(item["decision_id"])


def test_a_reject_verdict_makes_the_next_copy_match_also_after_a_restart(
    serve: Callable[..., AbstractContextManager[Api]],
) -> None:
    with serve() as api:
        reject(api, "L-first")
        again = api.score(listing_json(0, listing_id="L-second", **ODD)).json()
    assert again["rules_matched"][:1] == ["prohibited_term"] and "repost_of_rejected" in again["rules_matched"]
    assert repost_reasons(again) == [{**repost_reasons(again)[0], "matched_listing_id": "L-first", "similarity": 1.0}]

    with serve() as restarted:  # the same database: the verdict is read back from the decision log
        third = restarted.score(listing_json(0, listing_id="L-third", **ODD)).json()
        similar = restarted.client.get("/v1/listings/L-third/similar?k=3", headers=restarted.headers("review"))
        unknown = restarted.client.get("/v1/listings/nope/similar", headers=restarted.headers("review"))
        bad_k = restarted.client.get("/v1/listings/L-third/similar?k=0", headers=restarted.headers("review"))
        no_scope = restarted.client.get("/v1/listings/L-third/similar", headers=restarted.headers("score"))
    assert [r["matched_listing_id"] for r in repost_reasons(third)] == ["L-first"]
    assert similar.status_code == 200, similar.text
    cases = similar.json()["cases"]
    assert cases[0] == {
        "listing_id": "L-first",
        "verdict": "reject",
        "violation_reason": "prohibited_item",
        "similarity": 1.0,
    }
    assert unknown.status_code == 404 and bad_k.status_code == 422 and no_scope.status_code == 403


def test_similar_cases_of_a_training_listing_carry_training_verdicts(
    serve: Callable[..., AbstractContextManager[Api]], generated_dir: Path
) -> None:
    history = pd.read_parquet(generated_dir / "reviews.parquet")
    rejected = history[history["label"] == 1].iloc[-1]
    with serve() as api:
        response = api.client.get(f"/v1/listings/{rejected['listing_id']}/similar?k=5", headers=api.headers("review"))
    assert response.status_code == 200, response.text
    cases = response.json()["cases"]
    assert 0 < len(cases) <= 5 and all(c["listing_id"] != rejected["listing_id"] for c in cases)
    assert [c["similarity"] for c in cases] == sorted((c["similarity"] for c in cases), reverse=True)
    by_id = history.set_index("listing_id")
    for case in cases:
        truth = by_id.loc[case["listing_id"]]
        assert case["verdict"] == ("reject" if truth["label"] == 1 else "approve")
        assert case["violation_reason"] == (truth["violation_reason"] if truth["label"] == 1 else "")


def test_the_decision_log_gives_back_verdicts_in_review_order_with_their_listings(
    store: Store, clock: FakeClock
) -> None:
    first, second, unreviewed = store.record_decisions([make_decision(), make_decision(), make_decision()])
    store.record_review(first.decision_id, "alice", "reject", "counterfeit")
    clock.advance(60)
    store.record_review(second.decision_id, "alice", "approve")
    rows = store.reviewed_listings_after(None)
    assert [(r.listing_id, r.verdict, r.violation_reason) for r in rows] == [
        (first.listing_id, "reject", "counterfeit"),
        (second.listing_id, "approve", ""),
    ]
    assert rows[0].listing == first.listing and rows[0].reviewed_at < rows[1].reviewed_at
    assert [r.listing_id for r in store.reviewed_listings_after(rows[1].reviewed_at)] == [second.listing_id]
    assert [r.listing_id for r in store.reviewed_listings_after(None, limit=1)] == [first.listing_id]
    assert store.latest_listing(unreviewed.listing_id) == unreviewed.listing
    assert store.latest_listing("never-scored") is None


def test_a_catalogue_product_is_matched_named_in_the_reasons_and_routed_by_its_rule(bundle_dir: Path) -> None:
    bundle = Bundle.load(bundle_dir)
    assert bundle.identifier is not None and bundle.identifier.catalogue is not None  # configs/catalogue.csv
    engine = DecisionEngine.from_bundle(bundle, seed=0)
    listing = listing_json(5, title="Car GPS j@mmer, 12V", description="Blocks tracking on the road.")
    [record] = engine.decide_safely([listing], engine.score([listing]))
    assert "catalogue_prohibited" in record.rules_matched and record.decision == "human_review"
    [reason] = [r for r in record.reasons if r["feature"] == "catalogue_match"]
    assert reason["catalogue_name"] == "gps jammer" and reason["catalogue_entry_id"]
