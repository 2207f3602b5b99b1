"""Live rules: shadow rules never change a decision and are logged; rules change one at a time (mode,
enabled, version), audited with their reason; PUT /v1/policy no longer drops rules silently; the decision
log keeps rules_shadow and model_decision on every backend (old databases gain them); rule analytics over
HTTP, the CLI and the /rules page."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from bundle.load import Bundle
from decision.policy import Policy
from decision.rules import Rule
from serving.engine import DecisionEngine
from serving.store import DecisionRecord, Store
from tests.serving.conftest import Api, FakeClock, listing_json, make_decision, store_opener
from tests.serving.test_store_layout import write_log_without

Serve = Callable[..., AbstractContextManager[Api]]

WORDS = ["leather", "wallet", "replica", "watch", "vintage", "bag", "cream", "organic", "phone", "case"]
REPLICA = {"action": "block", "kind": "term", "terms": ["replica"], "fields": ["title"]}


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return Bundle.load(bundle_dir)


def random_listings(rng: np.random.Generator, n: int, categories: list[str]) -> list[dict[str, Any]]:
    return [
        listing_json(
            i,
            title=" ".join(rng.choice(WORDS, size=rng.integers(1, 5))),
            category=str(rng.choice(categories)),
            price=float(np.round(rng.lognormal(3, 1), 2)),
            merchant_tenure_days=float(rng.integers(0, 2000)),
        )
        for i in range(n)
    ]


def shadowed(policy: Policy, categories: list[str]) -> Policy:
    """The policy with a shadow block rule, a shadow review rule matching every listing, and a disabled
    block rule matching many."""
    every = {"action": "review", "kind": "category", "column": "category", "values": categories}
    extra = [
        Rule.from_dict({"name": "shadow_replica", **REPLICA, "mode": "shadow"}),
        Rule.from_dict({"name": "shadow_all", **every, "mode": "shadow"}),
        Rule.from_dict({"name": "off", **REPLICA, "terms": ["replica", "wallet", "bag"], "enabled": False}),
    ]
    return replace(policy, rules=[*policy.rules, *extra])


@pytest.mark.parametrize("seed", range(6))
def test_shadow_rules_never_change_a_decision_and_their_hits_are_logged(bundle: Bundle, seed: int) -> None:
    rng = np.random.default_rng(seed)
    categories = pd.read_parquet(bundle.path / "reference.parquet", columns=["category"])["category"].unique().tolist()
    n = int(rng.choice([1, 7, 40, 120]))  # single listings and batches (Python's re and the columnar RE2 path)
    listings = random_listings(rng, n, categories)
    plain = DecisionEngine(bundle=bundle, policy=bundle.policy, seed=seed)
    watched = DecisionEngine(bundle=bundle, policy=shadowed(bundle.policy, categories), seed=seed)
    scores = plain.score(listings)

    before, after = plain.decide(listings, scores), watched.decide(listings, scores)

    def acted(r: DecisionRecord) -> tuple[Any, ...]:
        return (r.decision, r.risk, r.priority, r.qa_sample, r.inclusion_prob, r.rules_matched, r.model_decision)

    assert [acted(r) for r in after] == [acted(r) for r in before]
    for listing, record in zip(listings, after, strict=True):
        expected = ["shadow_replica"] * ("replica" in str(listing["title"]).split()) + ["shadow_all"]
        assert record.rules_shadow == expected
        assert "off" not in record.rules_matched + record.rules_shadow
        if not record.rules_matched:  # no rule acted: the decision is the thresholds' alone
            assert record.decision == record.model_decision
    assert all(r.rules_shadow == [] for r in before)


# -- the HTTP service ---------------------------------------------------------------------------------


def change(api: Api, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
    return api.client.request(method, path, json=body, params=params or None, headers=api.headers("admin"))


def test_a_shadow_rule_is_logged_promoted_disabled_and_enabled_each_audited(serve: Serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        put = change(api, "PUT", "/v1/policy/rules/replica", {"rule": {**REPLICA, "mode": "shadow"}, "reason": "watch"})
        shadowed = api.score(listing_json(1, title="Replica watch")).json()
        refused = change(api, "PATCH", "/v1/policy/rules/replica", {"mode": "enforce", "reason": "not earned"})
        promoted = change(
            api, "PATCH", "/v1/policy/rules/replica", {"mode": "enforce", "reason": "campaign", "force": True}
        )
        enforced = api.score(listing_json(2, title="Replica watch")).json()
        disabled = change(api, "POST", "/v1/policy/rules/replica/disable", {"reason": "campaign over"})
        off = api.score(listing_json(3, title="Replica watch")).json()
        enabled = change(api, "POST", "/v1/policy/rules/replica/enable", {"reason": "it is back", "force": True})
        patched_off = change(api, "PATCH", "/v1/policy/rules/replica", {"enabled": False, "reason": "again off"})
        history = api.client.get("/v1/policy/history", headers=api.headers("read")).json()
        stored = api.store.get_decision(shadowed["decision_id"])
        missing = change(api, "POST", "/v1/policy/rules/nothing/disable", {"reason": "no such rule"})
        no_reason = change(api, "POST", "/v1/policy/rules/replica/enable", {})
        nothing = change(api, "PATCH", "/v1/policy/rules/replica", {"reason": "nothing to change"})
        bad_mode = change(api, "PATCH", "/v1/policy/rules/replica", {"mode": "loud", "reason": "bad mode"})

    def rule(response: Any) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        return next(r for r in response.json()["policy"]["rules"] if r["name"] == "replica")

    assert (rule(put)["mode"], rule(put)["enabled"], rule(put)["version"]) == ("shadow", True, 1)
    assert shadowed["rules_shadow"] == ["replica"] and "replica" not in shadowed["rules_matched"]
    assert shadowed["decision"] == shadowed["model_decision"] != "auto_block"
    assert stored is not None and stored.rules_shadow == ["replica"]
    assert stored.model_decision == shadowed["model_decision"]
    # promoting a shadow block rule puts a block rule in force: it must earn it, or be forced
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "rule.action"
    assert (rule(promoted)["mode"], rule(promoted)["version"]) == ("enforce", 2)
    assert enforced["decision"] == "auto_block" and enforced["rules_matched"] == ["replica"]
    assert enforced["rules_shadow"] == [] and enforced["model_decision"] != "auto_block"
    assert (rule(disabled)["enabled"], rule(disabled)["version"]) == (False, 3)
    assert "replica" not in off["rules_matched"] + off["rules_shadow"] and off["decision"] == off["model_decision"]
    assert (rule(enabled)["enabled"], rule(enabled)["version"]) == (True, 4)
    assert (rule(patched_off)["enabled"], rule(patched_off)["version"]) == (False, 5)
    reasons = [h["reason"].split("\n")[0] for h in history]  # forced changes append the gate's certificate
    assert reasons == ["again off", "it is back", "campaign over", "campaign", "watch"]
    assert "[rule gate: FORCED]" in history[1]["reason"] and "[rule gate: FORCED]" in history[3]["reason"]
    assert history[2]["old"]["rules"][-1]["enabled"] is True and history[2]["new"]["rules"][-1]["enabled"] is False
    assert missing.status_code == 404
    assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["field"] == "reason"
    assert nothing.status_code == 422 and nothing.json()["detail"][0]["field"] == "changes"
    assert bad_mode.status_code == 422 and bad_mode.json()["detail"][0]["field"] == "mode"


def test_put_policy_with_rules_needs_replace_rules(serve: Serve, own_bundle: Path) -> None:
    rules = [{"name": "only", **REPLICA, "action": "review"}]
    with serve(bundle=str(own_bundle)) as api:
        before = api.client.get("/v1/policy", headers=api.headers("read")).json()["policy"]
        refused = change(api, "PUT", "/v1/policy", {"rules": rules, "reason": "one rule"})
        unchanged = api.client.get("/v1/policy", headers=api.headers("read")).json()["policy"]
        thresholds_only = change(api, "PUT", "/v1/policy", {"qa_sample_rate": 0.05, "reason": "more audits"})
        replaced = change(api, "PUT", "/v1/policy", {"rules": rules, "replace_rules": True, "reason": "one rule"})
        history = api.client.get("/v1/policy/history", headers=api.headers("read")).json()

    assert before["rules"], "the bundle ships rules: the refusal protects them"
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "rules"
    assert "replace_rules" in refused.json()["detail"][0]["msg"]
    assert unchanged == before
    assert thresholds_only.status_code == 200 and thresholds_only.json()["policy"]["rules"] == before["rules"]
    assert replaced.status_code == 200 and [r["name"] for r in replaced.json()["policy"]["rules"]] == ["only"]
    assert history[0]["reason"] == "[replace_rules] one rule" and history[1]["reason"] == "more audits"


def test_rule_stats_over_http_the_cli_and_the_page(serve: Serve, own_bundle: Path, tmp_path: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        change(api, "PUT", "/v1/policy/rules/watch", {"rule": {**REPLICA, "mode": "shadow"}, "reason": "watch"})
        titles = ["Replica watch", "replica bag", "Replica belt", "Leather wallet", "Phone case"]
        items = api.batch([listing_json(i, title=t) for i, t in enumerate(titles)]).json()["items"]
        stats = api.client.get("/v1/rules/stats", params={"period": "all"}, headers=api.headers("read"))
        no_key = api.client.get("/v1/rules/stats")
        score_key = api.client.get("/v1/rules/stats", headers=api.headers("score"))
        bad_period = api.client.get("/v1/rules/stats", params={"period": "month"}, headers=api.headers("read"))
        backwards = api.client.get(
            "/v1/rules/stats",
            params={"since": "2026-01-02T00:00:00+00:00", "until": "2026-01-01T00:00:00+00:00"},
            headers=api.headers("read"),
        )
        page = api.client.get("/rules")
        script = api.client.get("/rules/rules.js")
        unknown_asset = api.client.get("/rules/secret.py")
        database_url = api.app.state.settings.database_url

    assert sum(i["rules_shadow"] == ["watch"] for i in items) == 3
    assert stats.status_code == 200, stats.text
    result = stats.json()
    row = next(r for r in result["rules"] if r["rule"] == "watch")
    assert (row["mode"], row["action"], row["hits"], row["decisions"], row["share"]) == ("shadow", "block", 3, 5, 0.6)
    assert row["model_pass"] + row["model_review"] + row["model_block"] == 3
    assert result["decisions"] == 5 and result["interval"].startswith("Clopper-Pearson")
    assert (no_key.status_code, score_key.status_code) == (401, 403)
    assert bad_period.status_code == 422 and bad_period.json()["detail"][0]["field"] == "period"
    assert backwards.status_code == 422 and backwards.json()["detail"][0]["field"] == "since"
    assert page.status_code == 200 and '<select id="period"' in page.text and '<label for="period"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "/v1/rules/stats" in script.text and unknown_asset.status_code == 404

    from triage.cli import app

    args = ["rules", "stats", "--db", database_url, "--bundle", str(own_bundle), "--period", "all"]
    as_json = CliRunner().invoke(app, [*args, "--json"])
    table = CliRunner().invoke(app, args)
    bad = CliRunner().invoke(app, [*args, "--since", "2026-01-02", "--until", "2026-01-01"])
    assert as_json.exit_code == 0, as_json.output
    cli_row = next(r for r in json.loads(as_json.output)["rules"] if r["rule"] == "watch")
    assert cli_row == row
    assert table.exit_code == 0 and "watch" in table.output and "co-occurrence" in table.output
    assert bad.exit_code != 0 and "--since" in bad.output


# -- the decision log ---------------------------------------------------------------------------------


def test_every_backend_writes_and_reads_rules_shadow_and_model_decision(store: Store, clock: FakeClock) -> None:
    at = {"decided_at": clock.now, "received_at": clock.now}
    records = [
        make_decision(rules_matched=["A"], rules_shadow=["S", "T"], model_decision="auto_pass", **at),
        make_decision(rules_matched=[], rules_shadow=[], model_decision=None, **at),
        make_decision(decision="auto_pass", automated=True, rules_shadow=["S"], model_decision="auto_pass", **at),
    ]
    store.record_decisions(records[:1])
    store.record_decisions(records[1:])  # the batch insert too
    for record in records:
        assert store.get_decision(record.decision_id) == record
    store.claim("alice", n=5)
    store.record_review(records[0].decision_id, "alice", "reject", "counterfeit", 42.0)

    since, until = clock.now - timedelta(days=1), clock.now + timedelta(days=1)
    log, truncated = store.rule_log(since, until, 10)

    assert not truncated and len(log) == 3
    by_id = log.set_index("decision_id")
    first = by_id.loc[records[0].decision_id]
    assert (first["verdict"], first["review_seconds"], first["rules_shadow"]) == ("reject", 42.0, ["S", "T"])
    assert pd.isna(by_id.loc[records[1].decision_id]["model_decision"])
    assert pd.isna(by_id.loc[records[2].decision_id]["verdict"])
    assert store.rule_log(since, until, 2)[1]  # truncated to the 2 most recent


def test_a_record_refuses_an_unknown_model_decision() -> None:
    with pytest.raises(ValueError, match="model_decision"):
        make_decision(model_decision="maybe")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        yield str(request.getfixturevalue("postgres_url"))
    else:
        yield f"sqlite:///{tmp_path / 'before-shadow-rules.db'}"


def test_a_log_from_before_shadow_rules_gains_their_columns(old_url: str, clock: FakeClock) -> None:
    added = {"rules_shadow", "model_decision"}
    old = write_log_without(old_url, added, clock)

    with store_opener(old_url, None, clock) as open_store:
        store = open_store()  # init_schema adds the columns
        new = make_decision(rules_shadow=["S"], model_decision="human_review", decided_at=clock.now)
        store.record_decisions([new])
        assert store.get_decision(old.decision_id) == old  # rules_shadow [] and model_decision None
        assert store.get_decision(new.decision_id) == new
        log, _ = store.rule_log(clock.now - timedelta(hours=1), clock.now + timedelta(hours=1), 10)
        assert sorted(map(tuple, log["rules_shadow"])) == [(), ("S",)]
        engine = create_engine(old_url)
        assert added <= {c["name"] for c in inspect(engine).get_columns("decisions")}
        engine.dispose()
