"""Backtests over the decision log: the store reads the serving model's decisions with a verdict as
history rows (every backend); POST /v1/rules/backtest and `triage rules backtest` run on the log, the
bundle's history or both, and on a small hand-made log equal a hand count."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bundle.load import Bundle
from features.identify import Identification
from serving.store import Store
from serving.store.decision_history import product_match
from tests.serving.conftest import Api, FakeClock, listing_json, make_decision

Serve = Callable[..., AbstractContextManager[Api]]
REPLICA_BLOCK = {"name": "replica_block", "action": "block", "kind": "term", "terms": ["replica"], "fields": ["title"]}
REPOST_BLOCK = {"name": "repost_block", "action": "block", "kind": "match", "values": ["repost"]}
# A listing no generated one resembles (the prohibited-term rule sends it to review), and its re-post
ODD = {
    "title": "Zanzibar heirloom switchblade with engraved walnut handle",
    "description": "Quokka pattern inlay, hand forged by Oswaldo in Tromso. Collectors only.",
    "brand": "Oswaldo Forge",
}
ODD_REPOST = {**ODD, "title": "Zanzibar heirloom sw1tchblade, engraved walnut handle"}
TITLES = ["Replica watch", "replica bag", "Replica belt, gold", "Leather wallet", "Phone case", "Vintage bag"]


# -- the store read -------------------------------------------------------------------------------------


def test_the_store_reads_the_models_decisions_with_a_verdict_as_history_rows(store: Store, clock: FakeClock) -> None:
    now = {"decided_at": clock.now, "received_at": clock.now}
    repost = [{"feature": "price", "contribution": 0.1}, {"feature": "repost_match", "matched_listing_id": "L0"}]
    both = [{"feature": "catalogue_match", "catalogue_entry_id": "C1"}, {"feature": "repost_match"}]
    reviewed = make_decision(
        listing_id="A", risk=0.4, inclusion_prob=1.0, tier_risk={"severe": 0.3, "minor": 0.2}, reasons=repost, **now
    )
    audited = make_decision(
        listing_id="B",
        decision="auto_pass",
        automated=True,
        qa_sample=True,
        inclusion_prob=0.25,
        risk=0.01,
        reasons=both,
        rules_matched=[],
        **now,
    )
    other_model = make_decision(listing_id="C", model_version="model-2", **now)
    unscored = make_decision(listing_id="D", risk=None, fallback_reason="model_unavailable", **now)
    pending = make_decision(listing_id="E", **now)
    too_old = make_decision(listing_id="F", decided_at=clock.now - timedelta(days=3), received_at=clock.now)
    store.record_decisions([reviewed, audited, other_model, unscored, pending, too_old])
    store.claim("alice", 10)
    verdicts = {"A": ("reject", "counterfeit", 42.0), "B": ("approve", None, None), "C": ("reject", None, 1.0)}
    verdicts |= {"D": ("reject", None, 1.0), "F": ("reject", None, 1.0)}
    for record in (reviewed, audited, other_model, unscored, too_old):
        verdict, reason, seconds = verdicts[record.listing_id]
        store.record_review(record.decision_id, "alice", verdict, reason, seconds)

    since, until = clock.now - timedelta(days=1), clock.now + timedelta(seconds=1)
    frame, truncated = store.decision_history("model-1", since, until, limit=100)
    everything, _ = store.decision_history("model-1", None, until, limit=100)
    latest, cut = store.decision_history("model-1", since, until, limit=1)
    none, _ = store.decision_history("model-3", None, until, limit=100)

    assert not truncated and cut and len(latest) == 1 and none.empty
    frame = frame.sort_values("listing_id").reset_index(drop=True)
    assert frame["listing_id"].tolist() == ["A", "B"]
    assert sorted(everything["listing_id"]) == ["A", "B", "F"]  # no lower bound: the older one too
    assert frame["label"].tolist() == [1, 0]
    assert frame["violation_reason"].tolist() == ["counterfeit", ""]
    assert frame["review_seconds"].iloc[0] == 42.0 and math.isnan(frame["review_seconds"].iloc[1])
    assert frame["inclusion_prob"].tolist() == [1.0, 0.25]
    assert frame["risk"].tolist() == [0.4, 0.01]
    assert frame["tier_risk_severe"].iloc[0] == 0.3 and math.isnan(frame["tier_risk_severe"].iloc[1])
    assert frame["product_match"].tolist() == ["repost", "repost catalogue"]
    assert frame["logged_decision"].tolist() == ["human_review", "auto_pass"]
    assert frame["title"].tolist() == ["cream", "cream"] and frame["price"].tolist() == [12.5, 12.5]


@pytest.mark.parametrize(
    "found", [Identification(), Identification(repost_of="L1"), Identification(repost_of="L1", catalogue_entry="C1")]
)
def test_product_match_from_the_reasons_is_what_identification_found(found: Identification) -> None:
    assert product_match(found.reasons()) == found.product_match


# -- the service ------------------------------------------------------------------------------------------


def verdict_for(title: str, first_replica: bool) -> str:
    """The hand-made verdicts: every replica is rejected but the first; the odd knife and its re-post too."""
    lowered = title.lower()
    if "replica" in lowered:
        return "approve" if first_replica else "reject"
    return "reject" if "zanzibar" in lowered else "approve"


def review_everything(api: Api, titles: dict[str, str], seen: set[str]) -> dict[str, str]:
    """Claim every queued item (both lanes) and record the hand-made verdict; returns decision id -> verdict."""
    given: dict[str, str] = {}
    while True:
        items = api.client.get("/v1/queue/next", params={"n": 100}, headers=api.headers("review")).json()["items"]
        if not items:
            return given
        for item in items:
            title = titles[item["decision_id"]]
            first_replica = "replica" in title.lower() and not any("replica" in t.lower() for t in seen)
            seen.add(title)
            verdict = verdict_for(title, first_replica)
            body = {"verdict": verdict, "review_seconds": 60.0}
            if verdict == "reject":
                body["violation_reason"] = "counterfeit"
            response = api.client.post(f"/v1/reviews/{item['decision_id']}", json=body, headers=api.headers("review"))
            assert response.status_code == 200, response.text
            given[item["decision_id"]] = verdict


def test_a_backtest_on_a_hand_made_log_equals_a_hand_count(serve: Serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        # hand-set thresholds that pass the plain listings, and audits of nearly every automated decision
        tiers = api.client.get("/v1/policy", headers=api.headers("read")).json()["policy"]["tier_pass"]
        change = {"t_pass": 0.5, "t_block": 0.97, "tier_pass": dict.fromkeys(tiers, 0.5), "qa_sample_rate": 0.9}
        audits = api.client.put("/v1/policy", json={**change, "reason": "hand-made log"}, headers=api.headers("admin"))
        assert audits.status_code == 200, audits.text
        listings = [listing_json(i, title=t) for i, t in enumerate(TITLES * 3)] + [listing_json(90, **ODD)]
        items = api.batch(listings).json()["items"]
        titles = {item["decision_id"]: str(listing["title"]) for item, listing in zip(items, listings, strict=True)}
        seen: set[str] = set()
        verdicts = review_everything(api, titles, seen)
        # the rejected knife is now a known reject: its re-post from the same seller matches it
        (again,) = api.batch([listing_json(90, listing_id="L-again", **ODD_REPOST)]).json()["items"]
        items.append(again)
        titles[again["decision_id"]] = ODD_REPOST["title"]
        verdicts |= review_everything(api, titles, seen)
        replica = api.post("/v1/rules/backtest", {"rule": REPLICA_BLOCK, "source": "log"}, scope="read")
        reposts = api.post("/v1/rules/backtest", {"rule": REPOST_BLOCK, "source": "log"}, scope="read")
        both = api.post(
            "/v1/rules/backtest", {"rule": REPLICA_BLOCK, "source": "both", "segment_by": ["row_source"]}, scope="read"
        )
        history_only = api.post("/v1/rules/backtest", {"rule": REPLICA_BLOCK}, scope="read")
        database_url = api.app.state.settings.database_url

    assert any(r["feature"] == "repost_match" for r in again["reasons"])
    logged = [item for item in items if item["decision_id"] in verdicts]
    assert len(logged) == len(verdicts) and sum(item["qa_sample"] for item in logged) >= 3  # audits are in the log
    weight = {item["decision_id"]: 1.0 / item["inclusion_prob"] for item in logged}
    hits = [item for item in logged if "replica" in titles[item["decision_id"]].lower()]
    rejected_hits = [item for item in hits if verdicts[item["decision_id"]] == "reject"]

    assert replica.status_code == 200, replica.text
    result = replica.json()
    assert result["source"] == "log" and result["sources"]["log_rows"] == len(logged) == result["rows"]
    assert result["weighted"] is True  # audited automated decisions count 1 / inclusion_prob times
    # re-routed with the logged risk and product match, the policy in force decides what the service did
    assert result["before"]["counts"] == {
        d: sum(i["decision"] == d for i in logged) for d in result["before"]["counts"]
    }
    after = Counter("auto_block" if item in hits else item["decision"] for item in logged)
    assert result["after"]["counts"] == {d: after[d] for d in result["after"]["counts"]}
    rule = result["rule"]
    assert (rule["hits"], rule["labelled_hits"], rule["violations"]) == (len(hits), len(hits), len(rejected_hits))
    expected_precision = sum(weight[i["decision_id"]] for i in rejected_hits) / sum(
        weight[i["decision_id"]] for i in hits
    )
    assert rule["precision"]["value"] == pytest.approx(expected_precision)
    assert result["violations"] == sum(v == "reject" for v in verdicts.values())

    assert reposts.status_code == 200, reposts.text
    repost_hits = [i for i in logged if any(r["feature"] == "repost_match" for r in i["reasons"])]
    assert reposts.json()["rule"]["hits"] == len(repost_hits) >= 1

    history_rows = history_only.json()["rows"]
    mixed = both.json()
    assert both.status_code == 200 and mixed["rows"] == history_rows + len(logged)
    assert mixed["sources"] == {
        "history_rows": history_rows,
        "log_rows": len(logged),
        "model_version": Bundle.load(own_bundle).version,
        "window": mixed["sources"]["window"],
        "log_truncated": False,
        "log_rows_also_in_history": 0,
    }
    assert mixed["segments"]["row_source"]["log"]["rule"]["hits"] == len(hits)
    assert mixed["segments"]["row_source"]["history"]["rule"]["hits"] == history_only.json()["rule"]["hits"]

    from triage.cli import app

    args = ["rules", "backtest", "--bundle", str(own_bundle), "--rule", json.dumps(REPLICA_BLOCK)]
    cli = CliRunner().invoke(app, [*args, "--source", "log", "--db", database_url, "--json"])
    table = CliRunner().invoke(app, [*args, "--source", "both", "--store", database_url])
    empty = CliRunner().invoke(app, [*args, "--source", "log", "--db", database_url, "--until", "2001-01-01"])
    bad_source = CliRunner().invoke(app, [*args, "--source", "lake"])
    stray_window = CliRunner().invoke(app, [*args, "--since", "2026-01-01"])
    bad_db = CliRunner().invoke(app, [*args, "--source", "log", "--db", "nonsense://nowhere"])
    assert cli.exit_code == 0, cli.output
    from_cli = json.loads(cli.output)
    assert {k: from_cli[k] for k in ("before", "after", "rule", "rows")} == {
        k: result[k] for k in ("before", "after", "rule", "rows")
    }
    assert table.exit_code == 0, table.output
    assert "decision log" in table.output and f"{history_rows + len(logged):,} rows" in table.output
    assert empty.exit_code == 2 and "no decision of model" in empty.output
    assert bad_source.exit_code == 2 and "--source" in bad_source.output
    assert stray_window.exit_code == 2 and "--since" in stray_window.output
    assert bad_db.exit_code == 2 and "--db: cannot read the decision log" in bad_db.output


def test_the_source_field_is_validated_and_an_empty_source_is_a_conflict(serve: Serve) -> None:
    def post(body: dict[str, Any]) -> Any:
        return api.post("/v1/rules/backtest", {"rule": REPLICA_BLOCK, **body}, scope="read")

    with serve() as api:
        bad_source = post({"source": "lake"})
        stray_window = post({"since": "2026-01-01T00:00:00Z"})
        backwards = post({"source": "log", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"})
        bad_time = post({"source": "log", "until": "yesterday"})
        empty_log = post({"source": "log"})
        empty_window = post({"source": "both", "until": "2001-01-01T00:00:00"})
        bad_condition = post(
            {
                "rule": {
                    "name": "two_conditions",
                    "action": "review",
                    "kind": "all",
                    "all": [
                        {"kind": "term", "terms": ["a"], "fields": ["title"]},
                        {"kind": "range", "column": "x", "min": 1},
                    ],
                }
            }
        )

    def field(response: Any) -> str:
        assert response.status_code == 422, response.text
        return str(response.json()["detail"][0]["field"])

    assert field(bad_source) == "source"
    assert field(stray_window) == "since"
    assert field(backwards) == "since"
    assert field(bad_time) == "until"
    assert field(bad_condition) == "rule.all[1].column"
    assert empty_log.status_code == 409 and "no decision of model" in empty_log.json()["detail"]
    assert empty_window.status_code == 200  # both: the history has rows, the log window none
    assert empty_window.json()["sources"]["log_rows"] == 0
