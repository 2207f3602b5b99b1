"""POST /v1/score and /v1/score/batch: decisions, validation, limits, auth, idempotency, parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bundle.load import Bundle
from decision.policy import DECISIONS, route
from decision.rules import match_rules
from tests.serving.conftest import listing_json

ITEM_FIELDS = {
    "tier_risk",
    "decision_tier",
    "decision_id",
    "listing_id",
    "decision",
    "automated",
    "risk",
    "priority",
    "reasons",
    "rules_matched",
    "rules_shadow",
    "model_decision",
    "qa_sample",
    "would_have_been",
    "fallback_reason",
    "model_version",
    "policy_version",
    "t_pass",
    "t_block",
    "request_id",
    "statement_of_reasons",
    "inclusion_prob",
    "warnings",
}


def test_one_listing_gets_a_logged_decision_with_risk_reasons_and_versions(serve) -> None:
    with serve() as api:
        response = api.score(listing_json(1, title="Rolex Submariner watch", brand="Rolex", price=30.0))

        assert response.status_code == 200, response.text
        item = response.json()
        assert set(item) == ITEM_FIELDS
        assert item["decision"] in DECISIONS and 0.0 <= item["risk"] <= 1.0
        assert item["reasons"] and all(r["contribution"] > 0 for r in item["reasons"])
        assert item["model_version"] == api.app.state.engine.model_version
        assert item["policy_version"] == api.app.state.engine.policy.version
        assert item["fallback_reason"] is None
        stored = api.store.get_decision(item["decision_id"])
        assert stored is not None and stored.decision == item["decision"] and stored.risk == item["risk"]
        assert stored.inclusion_prob == item["inclusion_prob"] and 0 < item["inclusion_prob"] <= 1


def test_a_batch_is_answered_in_request_order_and_fully_logged(serve) -> None:
    items = [listing_json(i, price=float(5 + i)) for i in range(150)]  # > SMALL_BATCH: the frame paths
    with serve() as api:
        response = api.batch(items)

        assert response.status_code == 200, response.text
        out = response.json()["items"]
        assert [o["listing_id"] for o in out] == [i["listing_id"] for i in items]
        assert api.store.count_decisions() == 150
        assert all(api.store.get_decision(o["decision_id"]) is not None for o in out)


def test_batch_scores_equal_single_scores(serve) -> None:
    items = [listing_json(i, price=float(3 * i + 1), title=f"item {i} replica watch") for i in range(80)]
    with serve() as api:
        batch = {o["listing_id"]: o["risk"] for o in api.batch(items).json()["items"]}
        single = {i["listing_id"]: api.score(i).json()["risk"] for i in items[:10]}

    for listing_id, risk in single.items():
        assert risk == pytest.approx(batch[listing_id], abs=1e-9)


def test_decisions_equal_the_policy_function_on_offline_risk(serve, generated_dir: Path, bundle_dir: Path) -> None:
    """The service routes exactly as decision.policy.route does on Bundle.scores (overall and per-tier risk)
    of the same listings."""
    frame = pd.read_parquet(generated_dir / "reviews.parquet").sample(300, random_state=3)
    bundle = Bundle.load(bundle_dir)
    columns = bundle.config.listing_columns
    listings = frame[columns].reset_index(drop=True)
    body = listings.assign(created_at=listings["created_at"].map(lambda t: t.isoformat())).to_dict("records")
    policy = bundle.policy
    risk, tier_risk = bundle.scores(listings)
    assert bundle.identifier is not None  # product identification fills the column match rules read
    identified = bundle.identifier.identify_records(listings.to_dict("records"), bundle.config.id)
    block, review, matched = match_rules(
        listings.assign(product_match=[f.product_match for f in identified]), policy.rules
    )
    t_pass, t_block = (
        policy.thresholds_for(listings[policy.segment_by].astype(str).to_numpy())
        if policy.segment_by
        else (policy.t_pass, policy.t_block)
    )
    tier_pass = policy.tier_pass_vector(bundle.tier_names)
    expected = [DECISIONS[c] for c in route(risk, t_pass, t_block, block, review, tier_risk, tier_pass)]

    with serve() as api:
        out = api.batch(body).json()["items"] + [api.score(b).json() for b in body[:20]]

    offline = expected + expected[:20]
    offline_risk = np.concatenate([risk, risk[:20]])
    offline_rules = matched + matched[:20]
    for item, decision, r, rules in zip(out, offline, offline_risk, offline_rules, strict=True):
        assert item["risk"] == pytest.approx(r, abs=1e-9)
        assert item["rules_matched"] == rules
        assert item["decision"] == decision  # an audited decision stays in force
        assert item["would_have_been"] is None


def test_a_retry_with_the_same_request_id_returns_the_same_decision_and_one_row(serve) -> None:
    with serve() as api:
        first = api.score({**listing_json(7), "request_id": "req-7"}).json()
        again = api.score({**listing_json(7), "request_id": "req-7"}).json()
        other = api.score({**listing_json(7), "request_id": "req-8"}).json()
        batch_1 = api.batch([listing_json(i) for i in range(5)], request_id="b-1").json()["items"]
        batch_2 = api.batch([listing_json(i) for i in range(5)], request_id="b-1").json()["items"]

        assert again["decision_id"] == first["decision_id"]
        assert other["decision_id"] != first["decision_id"]
        assert [b["decision_id"] for b in batch_1] == [b["decision_id"] for b in batch_2]
        assert api.store.count_decisions() == 2 + 5


def test_a_listing_without_a_price_scores_as_a_missing_price_as_it_trains(serve, bundle_dir: Path) -> None:
    """Training takes rows with no price (NaN); the API takes `"price": null` or no price the same way, with
    the risk offline scoring gives that row, instead of refusing a listing the model can score."""
    without = listing_json(3, title="Leather wallet", price=None)
    left_out = {k: v for k, v in listing_json(4, title="Leather wallet").items() if k != "price"}
    bundle = Bundle.load(bundle_dir)
    frame = pd.DataFrame([without, left_out]).assign(
        price=np.nan, created_at=lambda f: pd.to_datetime(f["created_at"], utc=True)
    )
    offline, _ = bundle.scores(frame[bundle.config.listing_columns])
    with serve() as api:
        null_price = api.score(without)
        no_price = api.score(left_out)
        batch = api.batch([without, listing_json(5)])

        assert null_price.status_code == 200, null_price.text
        assert no_price.status_code == 200, no_price.text
        assert batch.status_code == 200, batch.text
        assert null_price.json()["risk"] == pytest.approx(offline[0], abs=1e-9)
        assert no_price.json()["risk"] == pytest.approx(offline[1], abs=1e-9)
        assert batch.json()["items"][0]["risk"] == pytest.approx(offline[0], abs=1e-9)
        assert api.store.count_decisions() == 4


# -- bad input: 422 naming the field, never 500 ------------------------------------------------------

BAD_LISTINGS = [
    ("listing_id", {"listing_id": ""}),
    ("listing_id", {"listing_id": "x" * 129}),
    ("merchant_id", {"merchant_id": None}),
    ("title", {"title": "t" * 501}),
    ("description", {"description": "d" * 10_001}),
    ("price", {"price": -1}),
    ("price", {"price": "cheap"}),
    ("price", {"price": 1e400}),  # json.dumps writes Infinity
    ("image_count", {"image_count": -2}),
    ("image_count", {"image_count": 2.5}),
    ("merchant_tenure_days", {"merchant_tenure_days": 10**30}),
    ("merchant_tenure_days", {"merchant_tenure_days": -0.5}),
    ("has_certificate", {"has_certificate": 2}),
    ("created_at", {"created_at": "yesterday"}),
    ("created_at", {"created_at": "2999-01-01T00:00:00Z"}),
    ("colour", {"colour": "red"}),
    ("request_id", {"request_id": ""}),
]


@pytest.mark.parametrize(("field", "change"), BAD_LISTINGS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_LISTINGS)])
def test_an_invalid_listing_is_a_422_naming_the_field(serve, field: str, change: dict[str, object]) -> None:
    with serve() as api:
        response = api.score(listing_json(1, **change))
        batch = api.batch([listing_json(0), listing_json(1, **change)])

        assert response.status_code == 422, response.text
        assert field in {e["field"] for e in response.json()["detail"]}
        assert batch.status_code == 422
        assert f"items.1.{field}" in {e["field"] for e in batch.json()["detail"]}
        assert api.store.count_decisions() == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_literals_are_422_not_500(serve, literal: str) -> None:
    body = (
        f'{{"listing_id": "a", "merchant_id": "m", "title": "t", "category": "c", "market": "DE", "price": {literal}}}'
    )
    with serve() as api:
        response = api.client.post(
            "/v1/score", content=body, headers={**api.headers(), "content-type": "application/json"}
        )

        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["detail"]] == ["price"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'"a listing"',
        b"{" * 5000,
        b'{"price": 1' + b"0" * 5000 + b"}",
        "\udcff".encode("utf-8", "surrogatepass"),
    ],
    ids=["empty", "truncated", "array", "null", "string", "deep", "huge-int", "bad-utf8"],
)
def test_malformed_bodies_are_client_errors(serve, body: bytes) -> None:
    with serve() as api:
        for path in ("/v1/score", "/v1/score/batch"):
            response = api.client.post(
                path, content=body, headers={**api.headers(), "content-type": "application/json"}
            )
            assert 400 <= response.status_code < 500, (path, response.status_code, response.text)


@pytest.mark.parametrize("path", ["/v1/score", "/v1/score/batch"])
def test_a_body_that_is_not_declared_json_is_a_422_on_the_body(serve, path: str) -> None:
    items = {"items": [listing_json(1)]} if path.endswith("batch") else listing_json(1)
    with serve() as api:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = api.client.post(
                path, content=json.dumps(items), headers={**api.headers(), "content-type": content_type}
            )
            assert response.status_code == 422, response.text
            assert response.json()["detail"][0]["field"] == "body" and "JSON" in response.json()["detail"][0]["msg"]
        vendor = api.client.post(
            path, content=json.dumps(items), headers={**api.headers(), "content-type": "application/vnd.x+json"}
        )
        assert vendor.status_code == 200, vendor.text


def test_the_openapi_document_declares_both_scoring_bodies(serve) -> None:
    with serve() as api:
        spec = api.client.get("/openapi.json").json()

    schemas = spec["components"]["schemas"]
    for path, model in (("/v1/score", "ScoreRequest"), ("/v1/score/batch", "BatchRequest")):
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    assert schemas["BatchRequest"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Listing"}
    assert set(schemas["Listing"]["required"]) >= {"listing_id", "merchant_id", "title", "category"}
    assert "price" not in schemas["Listing"]["required"]  # a listing without a price scores as a missing price


def test_empty_and_oversized_batches_are_422_with_a_clear_message(serve) -> None:
    with serve(max_batch_items=10) as api:
        empty = api.batch([])
        over = api.batch([listing_json(i) for i in range(11)])
        at_limit = api.batch([listing_json(i) for i in range(10)])
        spec = api.client.get("/openapi.json").json()

    # the document declares the limit the service enforces
    assert spec["components"]["schemas"]["BatchRequest"]["properties"]["items"]["maxItems"] == 10
    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "items"
    assert over.status_code == 422
    assert over.json()["detail"][0]["field"] == "items" and "at most 10" in over.json()["detail"][0]["msg"]
    assert at_limit.status_code == 200


def test_a_body_over_the_limit_is_413_by_content_length_and_by_streamed_size(serve) -> None:
    big = listing_json(1, description="x" * 5000)
    with serve(max_body_bytes=4096) as api:
        declared = api.score(big)

        def chunks():  # no Content-Length: the size is only known while reading
            yield b'{"listing_id": "a", "description": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        streamed = api.client.post(
            "/v1/score", content=chunks(), headers={**api.headers(), "content-type": "application/json"}
        )
        small = api.score(listing_json(2))

    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert small.status_code == 200


# -- authentication -----------------------------------------------------------------------------------


def test_scoring_needs_a_valid_key_with_the_score_scope(serve) -> None:
    body = listing_json(1)
    with serve() as api:
        none = api.client.post("/v1/score", json=body)
        wrong = api.client.post("/v1/score", json=body, headers={"Authorization": "Bearer trg_nope_nope"})
        garbage = api.client.post("/v1/score", json=body, headers={"X-API-Key": "x" * 5000})
        reviewer = api.score(body, scope="review")
        admin = api.score(body, scope="admin")
        header_key = api.client.post("/v1/score", json=body, headers={"X-API-Key": api.tokens["score"]})

    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401 and garbage.status_code == 401
    assert reviewer.status_code == 403
    assert admin.status_code == 200 and header_key.status_code == 200


def test_unauthenticated_requests_do_not_reach_the_decision_log(serve) -> None:
    with serve() as api:
        api.client.post("/v1/score/batch", json={"items": [listing_json(1)]})
        assert api.store.count_decisions() == 0


# -- health, metrics, docs ----------------------------------------------------------------------------


def test_health_readiness_metrics_and_docs(serve) -> None:
    with serve() as api:
        api.score(listing_json(1))
        api.score(listing_json(2, price=-5))
        health = api.client.get("/healthz")
        ready = api.client.get("/readyz")
        metrics = api.client.get("/metrics").text
        docs = api.client.get("/docs")
        spec = api.client.get("/openapi.json").json()

    assert health.status_code == 200 and ready.status_code == 200 and ready.json()["ready"] is True
    assert 'triage_http_requests_total{method="POST",route="/v1/score",status="200"} 1.0' in metrics
    assert 'triage_http_requests_total{method="POST",route="/v1/score",status="422"} 1.0' in metrics
    assert 'triage_http_request_seconds_bucket{le="0.01",method="POST",route="/v1/score"}' in metrics
    assert "triage_decisions_total{decision=" in metrics
    assert "triage_model_ready 1.0" in metrics
    assert docs.status_code == 200
    assert {"/v1/score", "/v1/score/batch", "/v1/queue/next", "/v1/policy", "/v1/admin/reload"} <= set(spec["paths"])
    price = spec["components"]["schemas"]["ScoreRequest"]["properties"]["price"]
    assert {"type": "number", "minimum": 0, "maximum": 1e9} in price["anyOf"] and {"type": "null"} in price["anyOf"]


def test_one_json_log_line_per_request(serve, caplog: pytest.LogCaptureFixture) -> None:
    with serve() as api, caplog.at_level("INFO", logger="serving.access"):
        api.score(listing_json(1))
    lines = [r for r in caplog.records if r.name == "serving.access"]
    assert len(lines) == 1
    assert lines[0].route == "/v1/score" and lines[0].status == 200 and lines[0].ms > 0  # type: ignore[attr-defined]
