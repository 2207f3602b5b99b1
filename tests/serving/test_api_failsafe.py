"""Fail safe: no model, a failing model or a slow one -> human review with the reason, still logged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bundle.load import Bundle
from tests.serving.conftest import Api, listing_json

LISTINGS = [
    listing_json(i, price=float(i), title=t)
    for i, t in enumerate(["Leather wallet", "Rolex watch replica", "USB cable", "Vitamin C tablets"] * 5)
]


def assert_all_human_review(api: Api, items: list[dict[str, Any]], reason: str) -> None:
    assert {i["decision"] for i in items} == {"human_review"}
    assert {i["fallback_reason"] for i in items} == {reason}
    assert all(i["risk"] is None and i["automated"] is False for i in items)
    for item in items:  # logged, and queued for a person
        stored = api.store.get_decision(item["decision_id"])
        assert stored is not None and stored.fallback_reason == reason
    assert api.store.queue_counts("review")["pending"] == len(items)
    assert all(i["inclusion_prob"] == 1.0 and i["qa_sample"] is False for i in items)  # reviewed: certain


def test_without_a_bundle_the_service_starts_not_ready_and_sends_everything_to_review(
    serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("ERROR"), serve(bundle=str(tmp_path / "no-such-bundle")) as api:
        ready = api.client.get("/readyz")
        items = api.batch(LISTINGS).json()["items"] + [api.score(LISTINGS[0]).json()]

        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert api.client.get("/healthz").status_code == 200
        assert_all_human_review(api, items, "model_unavailable")
        assert "triage_model_ready 0.0" in api.client.get("/metrics").text
    assert any("NOT READY" in r.getMessage() for r in caplog.records)


def test_an_invalid_bundle_is_not_loaded(serve, own_bundle: Path) -> None:
    (own_bundle / "model.onnx").write_bytes(b"not a model")
    with serve(bundle=str(own_bundle)) as api:
        assert api.client.get("/readyz").status_code == 503
        assert_all_human_review(api, [api.score(LISTINGS[1]).json()], "model_unavailable")


def test_a_bundle_that_cannot_serve_still_takes_listings_of_its_own_data_config(serve, own_bundle: Path) -> None:
    """A team's export names its fields its own way: with the bundle refused (here its data config was
    changed after export, so its checksum fails), listings of that config still get a decision, human
    review, instead of a 422 asking for the built-in marketplace's fields. Only the contract is read
    from the unverified file: nothing it says can route a listing automatically."""
    config = own_bundle / "data_config.yaml"
    config.write_text(config.read_text().replace("id: listing_id", "id: sku", 1))
    listing = {"sku": "S-1", **{k: v for k, v in listing_json(1).items() if k != "listing_id"}}
    with serve(bundle=str(own_bundle)) as api:
        assert api.client.get("/readyz").status_code == 503
        items = [api.score(listing).json(), *api.batch([{**listing, "sku": "S-2"}]).json()["items"]]
        marketplace = api.score(listing_json(3))

        assert_all_human_review(api, items, "model_unavailable")
        assert [item["listing_id"] for item in items] == ["S-1", "S-2"]
        assert marketplace.status_code == 422 and "sku" in marketplace.text  # this deployment's contract


def test_a_scoring_exception_sends_every_item_to_review(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Bundle, X: np.ndarray) -> np.ndarray:
        raise RuntimeError("onnxruntime fell over")

    with serve() as api:
        monkeypatch.setattr(Bundle, "raw_scores", broken)
        items = api.batch(LISTINGS).json()["items"] + [api.score(LISTINGS[2]).json()]
        assert_all_human_review(api, items, "scoring_error")
        assert 'triage_fallbacks_total{reason="scoring_error"} 21.0' in api.client.get("/metrics").text


def test_a_failing_model_sends_block_rule_hits_to_review_too(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail safe means a person decides: a block rule does not auto-block a listing the model could not score."""

    def broken(self: Bundle, X: np.ndarray) -> np.ndarray:
        raise RuntimeError("onnxruntime fell over")

    block_replicas = {"name": "replica", "action": "block", "kind": "term", "terms": ["replica"], "fields": ["title"]}
    with serve() as api:
        policy = api.client.put(
            "/v1/policy",
            json={"rules": [block_replicas], "replace_rules": True, "reason": "replicas", "force": True},
            headers=api.headers("admin"),
        )
        assert policy.status_code == 200, policy.text
        assert api.score(LISTINGS[1]).json()["decision"] == "auto_block"  # the rule blocks while scoring works
        monkeypatch.setattr(Bundle, "raw_scores", broken)
        items = api.batch(LISTINGS).json()["items"]

        assert {i["decision"] for i in items} == {"human_review"}
        assert {i["fallback_reason"] for i in items} == {"scoring_error"}
        assert sum(i["rules_matched"] == ["replica"] for i in items) == 5  # the matches are still recorded


def test_scoring_past_the_time_budget_sends_every_item_to_review(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Bundle.raw_scores

    def slow(self: Bundle, X: np.ndarray) -> np.ndarray:
        time.sleep(2.0)
        return original(self, X)

    with serve(request_timeout_ms=50) as api:
        monkeypatch.setattr(Bundle, "raw_scores", slow)
        started = time.perf_counter()
        items = [api.score(LISTINGS[3]).json()] + api.batch(LISTINGS[:3]).json()["items"]
        elapsed = time.perf_counter() - started

        assert_all_human_review(api, items, "scoring_timeout")
        assert elapsed < 1.5  # answered at the budget, not when the (2 s) model finished


def test_a_failure_while_deciding_still_never_auto_passes(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.engine import DecisionEngine

    def broken(self: DecisionEngine, listings: list) -> tuple:
        raise ValueError("bad rule")

    with serve() as api:
        monkeypatch.setattr(DecisionEngine, "match_all_rules", broken)
        items = api.batch(LISTINGS).json()["items"]
        assert_all_human_review(api, items, "scoring_error")
