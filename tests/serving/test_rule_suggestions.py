"""GET /v1/rules/suggestions: mined on the bundle's history, read scope, bounded parameters, never enabled."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.serving.conftest import Api


def suggestions(api: Api, query: str = "") -> Any:
    """GET /v1/rules/suggestions, asking again while the report is being mined (202, Retry-After)."""
    for _ in range(600):
        response = api.client.get(f"/v1/rules/suggestions?{query}", headers=api.headers("read"))
        if response.status_code != 202:
            return response
        assert response.headers["Retry-After"] and response.json()["status"] == "mining"
        time.sleep(0.2)
    raise AssertionError("rule suggestions still mining after 120 s")


def test_suggestions_are_mined_on_the_bundle_history_and_never_enabled(
    serve: Callable[..., AbstractContextManager[Api]],
) -> None:
    with serve() as api:
        policy_before = api.client.get("/v1/policy", headers=api.headers("read")).json()
        first = api.client.get("/v1/rules/suggestions?limit=5", headers=api.headers("read"))
        response = suggestions(api, "limit=5")
        again = api.client.get(
            "/v1/rules/suggestions?limit=50&min_precision=0.5&sort=workload", headers=api.headers("read")
        )
        policy_after = api.client.get("/v1/policy", headers=api.headers("read")).json()

    assert first.status_code == 202 and first.headers["Retry-After"]  # mined in the background, never blocking
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["enabled"] is False and body["holdout_rows"] > 0 and body["mining_rows"] > 0
    assert 0 < len(body["suggestions"]) <= 5
    for suggestion in body["suggestions"]:
        assert suggestion["enabled"] is False
        assert suggestion["certificate"]["lower"] <= suggestion["certificate"]["precision"]
        assert suggestion["backtest"]["rows"] == body["holdout_rows"]
    lowers = [s["certificate"]["lower"] for s in body["suggestions"]]
    assert lowers == sorted(lowers, reverse=True)
    assert again.status_code == 200
    assert all(s["certificate"]["lower"] >= 0.5 for s in again.json()["suggestions"])
    assert policy_after == policy_before  # mining changed nothing in force


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=101", "limit"), ("min_precision=1.5", "min_precision"), ("sort=best", "sort")],
)
def test_bad_parameters_get_a_422_naming_them(
    serve: Callable[..., AbstractContextManager[Api]], query: str, field: str
) -> None:
    with serve() as api:
        response = api.client.get(f"/v1/rules/suggestions?{query}", headers=api.headers("read"))
    assert response.status_code == 422
    assert field in response.text


def test_suggestions_need_a_read_key_and_a_bundle_with_history(
    serve: Callable[..., AbstractContextManager[Api]], own_bundle: Path
) -> None:
    from bundle.manifest import read_manifest, write_manifest

    (own_bundle / "history.parquet").unlink()  # a bundle exported before history.parquet existed
    write_manifest(own_bundle, version=read_manifest(own_bundle).get("version"))
    with serve() as api:
        assert api.client.get("/v1/rules/suggestions").status_code == 401
        assert api.client.get("/v1/rules/suggestions", headers=api.headers("score")).status_code == 403
    with serve(bundle=str(own_bundle)) as api:
        response = api.client.get("/v1/rules/suggestions", headers=api.headers("read"))
    assert response.status_code == 409 and "history.parquet" in response.text


def test_a_suggestion_a_person_adds_acts_in_the_service(serve: Callable[..., AbstractContextManager[Api]]) -> None:
    """The workflow: read a suggestion, add it with PUT /v1/policy/rules/{name} and a reason; an "all" rule
    with a price range then routes the listings it matches, and only those."""
    from tests.serving.conftest import listing_json

    cheap_rolex = {
        "action": "review",
        "kind": "all",
        "all": [
            {"kind": "category", "column": "brand", "values": ["Rolex"]},
            {"kind": "range", "column": "price", "max": 900},
        ],
    }
    with serve() as api:
        top = suggestions(api, "limit=1").json()["suggestions"][0]
        suggested = {**top["rule"], "action": "review"}
        added = api.client.put(
            f"/v1/policy/rules/{top['name']}",
            json={"rule": suggested, "reason": "mined suggestion, backtested"},
            headers=api.headers("admin"),
        )
        own = api.client.put(
            "/v1/policy/rules/cheap_rolex",
            json={"rule": cheap_rolex, "reason": "counterfeit pattern"},
            headers=api.headers("admin"),
        )
        cheap = api.score(listing_json(1, brand="Rolex", price=450.0)).json()
        dear = api.score(listing_json(2, brand="Rolex", price=9000.0)).json()

    assert added.status_code == 200, added.text
    assert own.status_code == 200, own.text
    assert top["name"] in {r["name"] for r in added.json()["policy"]["rules"]}
    assert "cheap_rolex" in cheap["rules_matched"] and cheap["decision"] == "human_review"
    assert "cheap_rolex" not in dear["rules_matched"]
