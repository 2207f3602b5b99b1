"""Block rules earn auto-block on the bundle's labelled history; backtests predict what the service does."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from bundle.load import HISTORY_FILE, Bundle
from bundle.manifest import write_manifest
from bundle.policies import save_policy
from decision.backtest import certify_rule_precision
from decision.policy import Policy
from decision.rules import Rule
from tests.serving.conftest import Api

Serve = Callable[..., AbstractContextManager[Api]]
IVORY = {"action": "block", "kind": "term", "terms": ["ivory"], "fields": ["title", "description"]}
# wildlife and weapon terms that are nearly always violations in the generated data
STRICT = {
    "action": "block",
    "kind": "term",
    "terms": ["rhino horn", "tiger skin", "butterfly knife", "stun gun", "gps jammer"],
    "fields": ["title", "description", "brand"],
}


def put_rule(api: Api, name: str, rule: dict[str, Any], **extra: Any) -> Any:
    body = {"rule": rule, "reason": "a test of the gate", **extra}
    return api.client.put(f"/v1/policy/rules/{name}", json=body, headers=api.headers("admin"))


def history_reasons(api: Api) -> list[str]:
    return [h["reason"] for h in api.client.get("/v1/policy/history", headers=api.headers("read")).json()]


def test_the_bundle_ships_its_labelled_history(bundle_dir: Path) -> None:
    bundle = Bundle.load(bundle_dir)
    history = bundle.history()
    assert history is not None
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert HISTORY_FILE in manifest["files"]  # hashed (and signed) like every bundle file
    assert set(history["split"]) == {"calibration", "test"}
    assert {"risk", "label", *bundle.config.listing_columns} <= set(history.columns)
    assert {f"tier_risk_{name}" for name in bundle.tier_names} <= set(history.columns)
    reference = pd.read_parquet(bundle_dir / "reference.parquet")  # certified on calibration + test, in order
    assert history["listing_id"].astype(str).tolist() == reference["listing_id"].tolist()
    assert history["risk"].tolist() == reference["risk"].tolist()
    assert history["label"].tolist() == reference["label"].tolist()
    report = json.loads((bundle_dir / "rules_report.json").read_text())
    assert [r["name"] for r in report["rules"]] == [r.name for r in bundle.policy.rules]
    assert bundle.metrics["rules"]["rules"][0]["certificate"]["hits"] == report["rules"][0]["certificate"]["hits"]


def test_an_uncertified_block_rule_is_refused_unless_forced(serve: Serve) -> None:
    with serve() as api:
        refused = put_rule(api, "ivory", IVORY)
        rules_after_refusal = api.client.get("/v1/policy", headers=api.headers("read")).json()["policy"]["rules"]
        forced = put_rule(api, "ivory", IVORY, force=True)
        reasons = history_reasons(api)

    assert refused.status_code == 422
    error = refused.json()["detail"][0]
    assert error["field"] == "rule.action"
    assert all(word in error["msg"] for word in ("hits", "precision", "lower bound", "target 0.98"))
    assert "ivory" not in {r["name"] for r in rules_after_refusal}
    assert forced.status_code == 200, forced.text
    assert forced.json()["policy"]["rules"][-1]["action"] == "block"
    reason, note = reasons[0].split("\n", 1)
    assert reason == "a test of the gate" and note.startswith("[rule gate: FORCED]")
    (entry,) = json.loads(note.split("] ", 1)[1])
    assert entry["forced"] is True and entry["certificate"]["certified"] is False
    assert entry["certificate"]["hits"] > 0 and entry["certificate"]["target"] == 0.98


def test_a_certified_block_rule_goes_into_force(serve: Serve, own_bundle: Path) -> None:
    bundle = Bundle.load(own_bundle)
    history = bundle.history()
    assert history is not None
    assert certify_rule_precision(history, Rule.from_dict({"name": "strict", **STRICT}), 0.5, 0.05).certified
    # a bundle certified at a lower block-precision target (the policy API does not set targets: certification does)
    lowered = replace(
        bundle.policy,
        version="policy-lowered",
        targets={**bundle.policy.targets, "block_precision": 0.5, "confidence": 0.9},
    )
    save_policy(own_bundle, lowered)
    with serve(bundle=str(own_bundle)) as api:
        accepted = put_rule(api, "strict", STRICT)
        reasons = history_reasons(api)

    assert accepted.status_code == 200, accepted.text
    assert "[rule gate]" in reasons[0] and '"certified": true' in reasons[0]


def test_without_history_nothing_is_certified(serve: Serve, own_bundle: Path) -> None:
    (own_bundle / HISTORY_FILE).unlink()
    write_manifest(own_bundle)
    with serve(bundle=str(own_bundle)) as api:
        refused = put_rule(api, "strict", STRICT)
        backtested = api.post("/v1/rules/backtest", {"rule": {"name": "strict", **STRICT}}, scope="read")
        forced = put_rule(api, "strict", STRICT, force=True)
        review_rule = put_rule(api, "soft", {**STRICT, "action": "review"})

    assert refused.status_code == 422 and "no labelled history" in refused.json()["detail"][0]["msg"]
    assert backtested.status_code == 409
    assert forced.status_code == 200 and review_rule.status_code == 200  # a review rule needs no certificate


def test_backtest_endpoint_names_bad_fields(serve: Serve) -> None:
    with serve() as api:
        bad_terms = api.post("/v1/rules/backtest", {"rule": {**IVORY, "name": "x", "terms": []}}, scope="read")
        bad_remove = api.post("/v1/rules/backtest", {"remove": "no_such_rule"}, scope="read")
        bad_segment = api.post("/v1/rules/backtest", {"remove": "prohibited_term", "segment_by": ["x"]}, scope="read")
        score_key = api.post("/v1/rules/backtest", {"remove": "prohibited_term"}, scope="score")

    assert bad_terms.status_code == 422 and bad_terms.json()["detail"][0]["field"] == "rule.terms"
    assert bad_remove.status_code == 422 and bad_remove.json()["detail"][0]["field"] == "remove"
    assert bad_segment.status_code == 422 and bad_segment.json()["detail"][0]["field"] == "segment_by"
    assert score_key.status_code == 403


def _listings(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(frame[columns].to_json(orient="records", date_format="iso"))
    return records


def test_backtest_equals_what_the_service_then_does(serve: Serve, bundle_dir: Path) -> None:
    """Score listings, backtest a block rule on the service's own scores, put the rule in force, score the
    same listings again: the service's routing counts are the backtest's before and after."""
    bundle = Bundle.load(bundle_dir)
    history = bundle.history()
    assert history is not None
    hits = Rule.from_dict({"name": "ivory", **IVORY}).match(history)
    sample = pd.concat([history[hits], history[~hits].sample(300, random_state=3)]).reset_index(drop=True)
    listings = _listings(sample, bundle.config.listing_columns)
    with serve() as api:
        first = api.batch(listings).json()["items"]
        scored = sample.assign(
            risk=[item["risk"] for item in first],
            **{f"tier_risk_{t}": [item["tier_risk"][t] for item in first] for t in bundle.tier_names},
        )
        policy = Policy.from_dict(api.client.get("/v1/policy", headers=api.headers("read")).json()["policy"])
        from decision.backtest import backtest

        predicted = backtest(scored, policy, Rule.from_dict({"name": "ivory", **IVORY}))
        via_api = api.post("/v1/rules/backtest", {"rule": {"name": "ivory", **IVORY}}, scope="read").json()
        assert put_rule(api, "ivory", IVORY, force=True).status_code == 200
        second = api.batch([{**listing, "listing_id": f"{listing['listing_id']}-2"} for listing in listings]).json()[
            "items"
        ]

    assert [i["risk"] for i in second] == [i["risk"] for i in first]  # same listings, same scores
    assert Counter(i["decision"] for i in first) == Counter(
        {k: v for k, v in predicted["before"]["counts"].items() if v}
    )
    assert Counter(i["decision"] for i in second) == Counter(
        {k: v for k, v in predicted["after"]["counts"].items() if v}
    )
    assert predicted["rule"]["hits"] == int(hits.sum()) > 0
    assert via_api["rule"]["hits"] == int(hits.sum())  # the endpoint ran on the whole bundle history
    assert sum(via_api["after"]["counts"].values()) == len(history)
