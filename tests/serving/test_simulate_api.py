"""`/v1/simulate`: the CLI's numbers, target mode, validation, auth, the curve, the page shell, the headline
and, on a tiered bundle, per-tier thresholds and outcomes."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from bundle.load import read_reference
from bundle.policies import load_policy
from decision.rules import match_rule_masks, match_rules
from decision.simulate import rules_not_applied, simulate, sweep
from decision.thresholds import choose_policy_thresholds
from features.config import load_config
from triage.cli import app as cli_app

SCENARIO = {
    "t_pass": 0.02,
    "t_block": 0.8,
    "daily_volume": 50_000,
    "productive_hours_per_fte": 7.0,
    "prevalence_multiplier": 1.5,
}
RESPONSE_ONLY = {"bundle", "policy", "chosen", "segment"}  # keys the API adds around SimulationResult


def _reference(bundle_dir: Path) -> pd.DataFrame:
    """The rows the simulator replays: the reference set with the columns its rules read."""
    config = load_config(bundle_dir / "data_config.yaml")
    return read_reference(bundle_dir, config.id, config.listing_columns)


def _result_part(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in RESPONSE_ONLY}


def test_simulate_equals_training_simulate_on_the_reference(serve, untiered_bundle_dir: Path) -> None:
    reference = _reference(untiered_bundle_dir)
    policy = load_policy(untiered_bundle_dir)
    rule_block, rule_review, _ = match_rules(reference, policy.rules)
    expected = simulate(
        reference,
        SCENARIO["t_pass"],
        SCENARIO["t_block"],
        SCENARIO["daily_volume"],
        SCENARIO["productive_hours_per_fte"],
        SCENARIO["prevalence_multiplier"],
        qa_sample_rate=policy.qa_sample_rate,
        audit=policy.audit,
        rule_block=rule_block,
        rule_review=rule_review,
    ).to_dict()
    # the text and product-match rules are replayed on the bundle history's columns for the same listings
    expected["rules_not_applied"] = rules_not_applied(reference, policy.rules)
    assert expected["rules_not_applied"] == [] and rule_review.any()
    with serve(bundle=str(untiered_bundle_dir)) as api:
        got = api.client.get("/v1/simulate", params=SCENARIO, headers=api.headers("read"))
        posted = api.client.post("/v1/simulate", json=SCENARIO, headers=api.headers("read"))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["policy"] == "what-if" and body["bundle"] == str(untiered_bundle_dir)
    assert _result_part(body) == expected  # same function, same rows: equal to the last bit
    assert body["queue_per_day"]["value"] > 0 and body["recall"]["low"] <= body["recall"]["value"]
    assert posted.json() == body


def test_simulate_returns_what_the_cli_returns(serve, bundle_dir: Path) -> None:
    args = ["simulate", "--bundle", str(bundle_dir), "--json"]
    for name, value in SCENARIO.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    cli = CliRunner().invoke(cli_app, args)
    assert cli.exit_code == 0, cli.output
    with serve() as api:
        body = api.client.get("/v1/simulate", params=SCENARIO, headers=api.headers("read")).json()
        in_force = api.client.get("/v1/simulate", headers=api.headers("read")).json()
    assert body == json.loads(cli.output)
    cli_in_force = CliRunner().invoke(cli_app, ["simulate", "--bundle", str(bundle_dir), "--json"])
    assert in_force == json.loads(cli_in_force.output)
    assert in_force["policy"] == load_policy(bundle_dir).version


def test_a_policy_that_cannot_block_has_exactly_zero_blocks_as_in_the_cli(serve, bundle_dir: Path) -> None:
    """t_block = 1 and no block rule: the API gave 'wrongful blocks/day 0.0 (0.0-32.0)' and a low bound of
    2.7e-20 (the service replays with its cached rule masks, so it decides this apart from the CLI)."""
    cli = CliRunner().invoke(cli_app, ["simulate", "--bundle", str(bundle_dir), "--json", "--t-block", "1"])
    assert cli.exit_code == 0, cli.output
    with serve() as api:
        body = api.client.get("/v1/simulate", params={"t_block": 1}, headers=api.headers("read")).json()
    assert body == json.loads(cli.output)
    assert body["can_block"] is False
    assert body["auto_block_share"] == body["wrongful_blocks_per_day"] == {"value": 0.0, "low": 0.0, "high": 0.0}


def test_target_mode_returns_the_pair_choose_policy_thresholds_picks(serve, bundle_dir: Path) -> None:
    chosen = choose_policy_thresholds(_reference(bundle_dir), recall=0.97, block_precision=0.95)
    with serve() as api:
        response = api.client.get(
            "/v1/simulate", params={"recall": 0.97, "block_precision": 0.95}, headers=api.headers("read")
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["chosen"]["t_pass"], body["chosen"]["t_block"]) == (chosen.t_pass, chosen.t_block)
    assert (body["t_pass"], body["t_block"]) == (chosen.t_pass, chosen.t_block)
    assert body["chosen"]["feasible"] == chosen.feasible
    assert body["chosen"]["targets"]["recall"] == 0.97


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"t_pass": 0.5, "t_block": 0.2}, "t_block"),
        ({"t_pass": 0.3, "t_block": 0.3}, "t_block"),
        ({"t_pass": "nan", "t_block": 0.5}, "t_pass"),
        ({"t_pass": 0.1, "t_block": "inf"}, "t_block"),
        ({"t_pass": -0.1, "t_block": 0.5}, "t_pass"),
        ({"t_pass": 0.1, "t_block": 1.5}, "t_block"),
        ({"t_block": 1e-9}, "t_block"),  # below the t_pass in force
        ({"t_pass": 0.1, "recall": 0.99}, "recall"),  # thresholds or targets, not both
        ({"recall": 0.2}, "recall"),
        ({"daily_volume": 0}, "daily_volume"),
        ({"prevalence_multiplier": 99}, "prevalence_multiplier"),  # prevalence x 99 >= 1
        ({"segment_by": "category", "segment": "no-such-category"}, "segment"),
        ({"segment_by": "title", "segment": "x"}, "segment_by"),
        ({"breakdown_by": "merchant_id"}, "breakdown_by"),
    ],
)
def test_invalid_scenario_is_422_naming_the_field(
    serve, untiered_bundle_dir: Path, params: dict[str, Any], field: str
) -> None:
    with serve(bundle=str(untiered_bundle_dir)) as api:
        got = api.client.get("/v1/simulate", params=params, headers=api.headers("read"))
        posted = api.client.post(
            "/v1/simulate",
            content=json.dumps(params).replace('"nan"', "NaN").replace('"inf"', "Infinity"),
            headers={**api.headers("read"), "Content-Type": "application/json"},
        )
    for response in (got, posted):
        assert response.status_code == 422, response.text
        assert field in {d["field"] for d in response.json()["detail"]}, response.text


def test_simulate_needs_a_read_or_admin_key(serve) -> None:
    """Its answers name the bundle's path and replay the rules: for PMs and auditors, not score clients."""
    with serve() as api:
        assert api.client.get("/v1/simulate").status_code == 401
        assert api.client.get("/v1/simulate/curve").status_code == 401
        assert api.client.post("/v1/simulate", json={}).status_code == 401
        bad = {"Authorization": "Bearer trg_000000000000_not-a-key"}
        assert api.client.get("/v1/simulate", headers=bad).status_code == 401
        for scope in ("read", "admin"):
            assert api.client.get("/v1/simulate", headers=api.headers(scope)).status_code == 200
        for scope in ("score", "review"):
            assert api.client.get("/v1/simulate", headers=api.headers(scope)).status_code == 403
            assert api.client.get("/v1/simulate/context", headers=api.headers(scope)).status_code == 403


def test_segment_replays_only_its_rows_at_its_share_of_the_volume(serve, untiered_bundle_dir: Path) -> None:
    reference = _reference(untiered_bundle_dir)
    policy = load_policy(untiered_bundle_dir)
    value = reference["market"].astype(str).value_counts().index[0]
    part = reference[reference["market"].astype(str) == value]
    rule_block, rule_review, _ = match_rules(part, policy.rules)
    expected = simulate(
        part,
        0.02,
        0.8,
        50_000 * len(part) / len(reference),
        qa_sample_rate=policy.qa_sample_rate,
        audit=policy.audit,
        rule_block=rule_block,
        rule_review=rule_review,
    ).to_dict()
    expected["rules_not_applied"] = rules_not_applied(part, policy.rules)
    params = {"t_pass": 0.02, "t_block": 0.8, "daily_volume": 50_000, "segment_by": "market", "segment": value}
    with serve(bundle=str(untiered_bundle_dir)) as api:
        body = api.client.get("/v1/simulate", params=params, headers=api.headers("read")).json()
        context = api.client.get("/v1/simulate/context", headers=api.headers("read")).json()
    assert body["segment"] == {"column": "market", "value": value}
    assert _result_part(body) == expected
    assert value in context["segments"]["market"]
    assert context["policy"]["version"] == policy.version and context["n_reference"] == len(reference)


def test_curve_is_the_sweep_at_the_scenario_t_block(serve, bundle_dir: Path) -> None:
    reference = _reference(bundle_dir)
    rule_block, rule_review = match_rule_masks(reference, load_policy(bundle_dir).rules)
    assert rule_review.any()  # the policy's rules queue some listings at every t_pass: on the curve too
    expected = sweep(
        reference, t_block=0.8, daily_volume=50_000, n_points=100, rule_block=rule_block, rule_review=rule_review
    )
    with serve() as api:
        response = api.client.get(
            "/v1/simulate/curve",
            params={"t_pass": 0.02, "t_block": 0.8, "daily_volume": 50_000, "n_points": 100},
            headers=api.headers("read"),
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["t_block"] == 0.8
    pd.testing.assert_frame_equal(pd.DataFrame(body["points"]), expected, check_exact=True)


def test_reference_is_read_once_and_calls_are_fast(serve) -> None:
    from serving.simulation import reference_set

    with serve() as api:
        api.client.get("/v1/simulate", headers=api.headers("read"))
        misses = reference_set.cache_info().misses
        timings = []
        for i in range(20):
            started = time.perf_counter()
            response = api.client.get(
                "/v1/simulate", params={"t_pass": 0.001 + i * 0.01, "t_block": 0.9}, headers=api.headers("read")
            )
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200
        api.client.get("/v1/simulate/curve", headers=api.headers("read"))
        assert reference_set.cache_info().misses == misses
    assert statistics.median(timings) < 0.2


def test_applying_a_simulated_pair_puts_it_in_force(serve, untiered_bundle_dir: Path, tmp_path: Path) -> None:
    """The page's apply path: PUT /v1/policy (admin only) with the simulated pair; the simulator's
    in-force numbers then equal the what-if numbers for that pair."""
    import shutil

    own_bundle = Path(shutil.copytree(untiered_bundle_dir, tmp_path / "own"))
    pair = {"t_pass": 0.03, "t_block": 0.7}
    change: dict[str, Any] = {**pair, "segment_by": None, "segments": {}, "reason": "simulated pair"}
    with serve(bundle=str(own_bundle)) as api:
        what_if = api.client.get("/v1/simulate", params=pair, headers=api.headers("read")).json()
        refused = api.client.put("/v1/policy", json=change, headers=api.headers("score"))
        applied = api.client.put("/v1/policy", json=change, headers=api.headers("admin"))
        in_force = api.client.get("/v1/simulate", headers=api.headers("read")).json()
    assert refused.status_code == 403
    assert applied.status_code == 200, applied.text
    assert in_force["policy"] == applied.json()["policy"]["version"]
    assert _result_part(in_force) == _result_part(what_if)


def test_page_shell_loads_without_a_key_and_only_from_the_service(serve) -> None:
    with serve() as api:
        page = api.client.get("/simulator")
        script = api.client.get("/simulator/simulator.js")
        style = api.client.get("/simulator/simulator.css")
        key_form = api.client.get("/simulator/keyform.js")
        assert api.client.get("/simulator/app.py").status_code == 404
        assert api.client.get("/simulator/..%2Fapi%2Fsimulate.py").status_code == 404
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert "http://" not in page.text and "https://" not in page.text
    assert "https://" not in script.text
    assert '<script src="/simulator/keyform.js"' in page.text and "TriageKey.wire" in script.text
    assert key_form.status_code == 200 and "sessionStorage" in key_form.text  # the key stays in the tab


def test_untiered_bundle_has_a_headline_and_no_tiers(serve, untiered_bundle_dir: Path) -> None:
    with serve(bundle=str(untiered_bundle_dir)) as api:
        body = api.client.get("/v1/simulate", headers=api.headers("read")).json()
        context = api.client.get("/v1/simulate/context", headers=api.headers("read")).json()
        refused = api.client.get("/v1/simulate", params={"tier_pass": "severe:0.01"}, headers=api.headers("read"))
    headline = body["headline"]
    assert headline["auto_decided_share"]["value"] == pytest.approx(1 - body["queue_share"]["value"])
    gross = headline["fte_saved_gross"]["value"]
    assert gross == pytest.approx(headline["fte_review_all"]["value"] - body["fte"]["value"])
    audits = body["qa_hours_per_day"] / body["productive_hours_per_fte"]
    assert headline["audit_fte"]["value"] == pytest.approx(audits) and audits > 0
    assert headline["fte_saved"]["value"] == pytest.approx(gross - audits)  # an audit is a review all the same
    assert body["tiers"] == [] and context["tiers"] == []
    assert refused.status_code == 422
    assert [d["field"] for d in refused.json()["detail"]] == ["tier_pass"]
    assert "not tiered" in refused.text


def test_tiered_bundle_reports_each_tier_as_simulate_policy_does(serve, tiered_bundle_dir: Path) -> None:
    from decision.simulate import simulate_policy

    reference = _reference(tiered_bundle_dir)
    policy = load_policy(tiered_bundle_dir)
    assert policy.tier_pass  # the fixture's policy is tiered
    expected = simulate_policy(reference, policy, daily_volume=50_000).to_dict()
    with serve(bundle=str(tiered_bundle_dir)) as api:
        body = api.client.get("/v1/simulate", params={"daily_volume": 50_000}, headers=api.headers("read")).json()
        context = api.client.get("/v1/simulate/context", headers=api.headers("read")).json()
    assert body["policy"] == policy.version
    assert _result_part(body) == expected
    assert sorted(t["name"] for t in body["tiers"]) == sorted(policy.tier_pass)
    for tier in body["tiers"]:
        assert tier["t_pass"] == policy.tier_pass[tier["name"]]
        assert tier["recall_target"] == policy.targets["recall"][tier["name"]]
        assert tier["n_violations"] == int(((reference["tier"] == tier["name"]) & (reference["label"] == 1)).sum())
    assert context["policy"]["tier_pass"] == policy.tier_pass
    assert [(t["name"], t["t_pass"], t["recall_target"]) for t in context["tiers"]] == [
        (t["name"], t["t_pass"], t["recall_target"]) for t in body["tiers"]
    ]


def test_a_what_if_on_a_tiered_policy_moves_the_named_tier_only(serve, tiered_bundle_dir: Path) -> None:
    from decision.simulate import simulate_policy, with_thresholds

    reference = _reference(tiered_bundle_dir)
    policy = load_policy(tiered_bundle_dir)
    first, *others = list(policy.tier_pass)
    changed = {**policy.tier_pass, first: 0.5 * policy.tier_pass[first]}
    what_if = with_thresholds(policy, list(policy.tier_pass), t_block=0.8, tier_pass={first: changed[first]})
    assert what_if.tier_pass == changed and what_if.t_pass < 0.8  # the overall t_pass follows t_block down
    expected = simulate_policy(reference, what_if).to_dict()
    params = {"tier_pass": f"{first}:{changed[first]!r}", "t_block": 0.8}
    with serve(bundle=str(tiered_bundle_dir)) as api:
        got = api.client.get("/v1/simulate", params=params, headers=api.headers("read"))
        posted = api.client.post(
            "/v1/simulate", json={**params, "tier_pass": [params["tier_pass"]]}, headers=api.headers("read")
        )
        in_force = api.client.get("/v1/simulate", headers=api.headers("read")).json()
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["policy"] == "what-if" and posted.json() == body
    assert _result_part(body) == expected
    tiers = {t["name"]: t for t in body["tiers"]}
    assert tiers[first]["t_pass"] == changed[first]
    assert all(tiers[name]["t_pass"] == policy.tier_pass[name] for name in others)  # kept as in force
    assert body["auto_pass_share"]["value"] <= in_force["auto_pass_share"]["value"]


@pytest.mark.parametrize(
    "tier_pass",
    [["severe"], ["severe:x"], ["severe:1.5"], ["severe:nan"], ["no_such_tier:0.1"], ["severe:0.1", "severe:0.2"]],
)
def test_invalid_tier_thresholds_are_422_naming_tier_pass(serve, tiered_bundle_dir: Path, tier_pass: list[str]) -> None:
    with serve(bundle=str(tiered_bundle_dir)) as api:
        got = api.client.get("/v1/simulate", params={"tier_pass": tier_pass}, headers=api.headers("read"))
        posted = api.client.post("/v1/simulate", json={"tier_pass": tier_pass}, headers=api.headers("read"))
        targets = api.client.post(
            "/v1/simulate", json={"recall": 0.95, "tier_pass": ["severe:0.01"]}, headers=api.headers("read")
        )
    for response in (got, posted, targets):
        assert response.status_code == 422, response.text
        assert [d["field"] for d in response.json()["detail"]] == ["tier_pass"], response.text
