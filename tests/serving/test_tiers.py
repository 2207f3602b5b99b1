"""Tiered bundles in the service: every tier's risk and t_pass route each listing, exactly as the
evaluation routes the same rows; decisions carry tier_risk and decision_tier through the API, the
decision log and the policy admin; untiered bundles are unchanged."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect

from bundle.load import Bundle, read_reference
from decision.policy import CODE_BLOCK, CODE_PASS, DECISIONS, Policy, driving_tier, route
from decision.rules import match_rules
from decision.simulate import simulate
from decision.tiers import risk_column
from serving.api.schemas import scored_item
from serving.engine import SCORING_ERROR, DecisionEngine
from serving.models import reference_routing, routing_report
from serving.store import Store
from tests.serving.conftest import FakeClock, listing_json, make_decision, store_opener
from tests.serving.test_store_layout import write_log_without
from training.evaluate import evaluate_scores
from training.offline import identified


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return Bundle.load(bundle_dir)


@pytest.fixture(scope="module")
def listings(generated_dir: Path, bundle: Bundle) -> pd.DataFrame:
    frame = pd.read_parquet(generated_dir / "reviews.parquet").sample(1500, random_state=11)
    return frame.reset_index(drop=True)


def records_of(listings: pd.DataFrame, bundle: Bundle) -> list[dict[str, Any]]:
    return listings[bundle.config.listing_columns].to_dict("records")


def scores_of(bundle: Bundle, listings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    risk, tier_risk = bundle.scores(listings[bundle.config.listing_columns])
    assert tier_risk is not None and tier_risk.shape == (len(listings), len(bundle.tier_names))
    return risk, tier_risk


def tier_policy(bundle: Bundle, risk: np.ndarray, tier_risk: np.ndarray) -> Policy:
    """A policy whose tier thresholds decide a good share of passes: each tier's t_pass at its median
    risk, the overall t_pass above every risk (so only the tiers hold listings back), the least audit floor."""
    t_block = float(np.quantile(risk, 0.97))
    tier_pass = {name: float(np.median(tier_risk[:, k])) for k, name in enumerate(bundle.tier_names)}
    return dataclasses.replace(bundle.policy, t_pass=t_block - 1e-9, t_block=t_block, segment_by=None,
                               segments={}, tier_pass=tier_pass, qa_sample_rate=0.001).validate()  # fmt: skip


def test_the_session_bundle_is_tiered(bundle: Bundle) -> None:
    """The default data config has tiers severe and minor: training on it makes one model per tier."""
    assert bundle.tier_names == ["severe", "minor"]
    assert bundle.policy.tier_pass and set(bundle.policy.tier_pass) == set(bundle.tier_names)


def test_a_tiered_engine_routes_as_the_evaluation_routes_the_same_rows(bundle: Bundle, listings: pd.DataFrame) -> None:
    risk, tier_risk = scores_of(bundle, listings)
    policy = tier_policy(bundle, risk, tier_risk)
    engine = DecisionEngine.from_bundle(bundle, policy=policy, seed=0)
    records = records_of(listings, bundle)
    scores = engine.score(records)
    decided = engine.decide(records, scores)

    assert scores.tier_risk is not None
    np.testing.assert_allclose(scores.tier_risk, tier_risk, atol=1e-9)
    rule_block, rule_review, _ = match_rules(identified(bundle, listings), policy.rules)
    tier_pass = policy.tier_pass_vector(bundle.tier_names)
    expected = route(risk, policy.t_pass, policy.t_block, rule_block, rule_review, tier_risk, tier_pass)
    assert [r.decision for r in decided] == [DECISIONS[c] for c in expected]
    # the evaluation (training.evaluate) counts the same split on the same rows
    frame = pd.DataFrame({"label": listings["label"].to_numpy(), "risk": risk})
    for k, name in enumerate(bundle.tier_names):
        frame[risk_column(name)] = tier_risk[:, k]
    routing = evaluate_scores(frame, policy, rule_masks=(rule_block, rule_review))["routing"]
    served = pd.Series([r.decision for r in decided]).value_counts(normalize=True)
    assert served.get("auto_pass", 0.0) == pytest.approx(routing["auto_pass_share"])
    assert served.get("auto_block", 0.0) == pytest.approx(routing["auto_block_share"])
    # ... and so does the simulator replaying these rows (tier column: each violation's tier)
    frame["tier"] = np.where(frame["label"] == 1, "severe", "")
    simulated = simulate(
        frame, policy.t_pass, policy.t_block, rule_block=rule_block, rule_review=rule_review, tier_pass=policy.tier_pass
    )
    assert simulated.auto_pass_share.value == pytest.approx(routing["auto_pass_share"])
    assert simulated.auto_block_share.value == pytest.approx(routing["auto_block_share"])
    # the tiers matter: without them every listing under t_pass (nearly all) would pass
    untiered = route(risk, policy.t_pass, policy.t_block, rule_block, rule_review)
    assert (untiered == CODE_PASS).sum() > (expected == CODE_PASS).sum() > 0


def test_decisions_carry_each_tier_risk_and_the_tier_behind_them(bundle: Bundle, listings: pd.DataFrame) -> None:
    risk, tier_risk = scores_of(bundle, listings)
    policy = tier_policy(bundle, risk, tier_risk)
    engine = DecisionEngine.from_bundle(bundle, policy=policy, seed=0)
    records = records_of(listings, bundle)
    decided = engine.decide(records, engine.score(records))
    codes = np.array([DECISIONS.index(r.decision) for r in decided])
    driver = driving_tier(codes, tier_risk, policy.tier_pass_vector(bundle.tier_names))

    names = bundle.tier_names
    for record, row, k in zip(decided, tier_risk, driver.tolist(), strict=True):
        assert record.tier_risk == pytest.approx(dict(zip(names, row.tolist(), strict=True)), abs=1e-9)
        assert record.decision_tier == (None if k < 0 else names[k])
    assert {r.decision_tier for r in decided if r.decision == "auto_pass"} == {None}
    blocks = [r for r in decided if r.decision == "auto_block"]
    assert (codes == CODE_BLOCK).any() and blocks
    for record in blocks:
        assert record.tier_risk is not None
        tier = max(record.tier_risk, key=lambda name: record.tier_risk[name])  # type: ignore[index]
        assert record.decision_tier == tier
        assert f"likeliest violation type: {tier}" in record.statement_of_reasons["facts_and_circumstances"]  # type: ignore[index]
    reviewed = [r for r in decided if r.decision == "human_review"]
    assert {r.decision_tier for r in reviewed} <= set(names) and reviewed
    item = scored_item(blocks[0])
    assert item["tier_risk"] == blocks[0].tier_risk and item["decision_tier"] == blocks[0].decision_tier


def test_a_listing_that_cannot_be_scored_goes_to_review_without_tier_fields(
    bundle: Bundle, listings: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = DecisionEngine.from_bundle(bundle, seed=0)
    records = records_of(listings.head(20), bundle)

    def broken(X: np.ndarray) -> np.ndarray:
        raise RuntimeError("tier model failed")

    monkeypatch.setattr(bundle, "tier_risk", broken)
    scores = engine.score(records)
    decided = engine.decide(records, scores)

    assert scores.fallback_reason == SCORING_ERROR
    assert scores.tier_risk is not None and scores.tier_risk.shape == (20, 2) and np.isnan(scores.tier_risk).all()
    assert {r.decision for r in decided} == {"human_review"}
    assert all(r.tier_risk is None and r.decision_tier is None and r.risk is None for r in decided)


def test_tier_thresholds_without_tier_risks_pass_nothing(bundle: Bundle, listings: pd.DataFrame) -> None:
    """A timeout's fallback scores carry no tier risks: routing stays fail safe."""
    engine = DecisionEngine.from_bundle(bundle, seed=0)
    records = records_of(listings.head(50), bundle)
    scores = engine.score(records)
    no_tiers = dataclasses.replace(scores, tier_risk=None)
    decided = engine.decide(records, no_tiers)
    assert "auto_pass" not in {r.decision for r in decided}
    assert all(r.tier_risk is None and r.decision_tier is None for r in decided)


def test_an_untiered_bundle_routes_and_records_as_before(bundle: Bundle, listings: pd.DataFrame) -> None:
    untiered = dataclasses.replace(bundle, tiers=[])
    policy = dataclasses.replace(bundle.policy, tier_pass={}, t_pass=0.05, t_block=0.9, qa_sample_rate=0.001)
    engine = DecisionEngine.from_bundle(untiered, policy=policy, seed=0)
    records = records_of(listings, bundle)
    scores = engine.score(records)
    decided = engine.decide(records, scores)

    assert scores.tier_risk is None
    rule_block, rule_review, _ = match_rules(identified(bundle, listings), policy.rules)
    expected = route(bundle.risk(listings[bundle.config.listing_columns]), 0.05, 0.9, rule_block, rule_review)
    assert [r.decision for r in decided] == [DECISIONS[c] for c in expected]
    assert all(r.tier_risk is None and r.decision_tier is None for r in decided)
    assert {"auto_pass", "human_review"} <= {r.decision for r in decided}
    assert scored_item(decided[0])["tier_risk"] is None


# -- decision log: SQLite and PostgreSQL ----------------------------------------------------------------


def test_the_decision_log_keeps_tier_risk_and_decision_tier(store: Store) -> None:
    tiered = make_decision(tier_risk={"severe": 0.25, "minor": 0.0125}, decision_tier="severe")
    passed = make_decision(decision="auto_pass", automated=True, tier_risk={"severe": 0.001, "minor": 0.002})
    untiered = make_decision()
    store.record_decisions([tiered, passed, untiered])

    for record in (tiered, passed, untiered):
        stored = store.get_decision(record.decision_id)
        assert stored is not None
        assert (stored.tier_risk, stored.decision_tier) == (record.tier_risk, record.decision_tier)
    queued = {item.decision_id: item.decision for item in store.claim("reviewer-1", n=10)}
    assert queued[tiered.decision_id].tier_risk == tiered.tier_risk
    assert queued[tiered.decision_id].decision_tier == "severe"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'before-tiers.db'}"


def test_a_log_from_before_tiers_gains_the_tier_columns(old_url: str, clock: FakeClock) -> None:
    tier_columns = {"tier_risk", "decision_tier"}
    old = write_log_without(old_url, tier_columns, clock)

    with store_opener(old_url, None, clock) as open_store:
        store = open_store()  # init_schema adds the columns
        new = make_decision(tier_risk={"severe": 0.5, "minor": 0.25}, decision_tier="severe")
        store.record_decisions([new])
        assert store.get_decision(old.decision_id) == old  # tier fields None
        stored = store.get_decision(new.decision_id)
        assert stored is not None and stored.tier_risk == new.tier_risk and stored.decision_tier == "severe"
        engine = create_engine(old_url)
        assert tier_columns <= {c["name"] for c in inspect(engine).get_columns("decisions")}
        engine.dispose()


def test_a_record_refuses_a_tier_risk_that_is_no_probability() -> None:
    with pytest.raises(ValueError, match="tier_risk"):
        make_decision(tier_risk={"severe": float("nan")})
    with pytest.raises(ValueError, match="tier_risk"):
        make_decision(tier_risk={"severe": 1.5})


# -- the HTTP service ------------------------------------------------------------------------------------


def test_score_batch_and_queue_responses_carry_the_tier_fields(serve, bundle: Bundle) -> None:
    names = set(bundle.tier_names)
    with serve() as api:
        single = api.score(listing_json(1)).json()
        batch = api.batch([listing_json(i, title=f"item {i}") for i in range(2, 12)]).json()["items"]
        queue = api.client.get("/v1/queue/next?n=50", headers=api.headers("review")).json()["items"]
        stored = api.store.get_decision(single["decision_id"])
        schema = api.client.get("/openapi.json").json()["components"]["schemas"]

    for item in [single, *batch]:
        assert set(item["tier_risk"]) == names
        assert all(0.0 <= r <= 1.0 for r in item["tier_risk"].values())
        assert item["decision_tier"] in names | {None}
        if item["decision"] == "auto_pass":
            assert item["decision_tier"] is None
    assert stored is not None and stored.tier_risk == pytest.approx(single["tier_risk"])
    assert stored.decision_tier == single["decision_tier"]
    assert queue and all(set(q["decision"]["tier_risk"]) == names for q in queue)
    assert {"tier_risk", "decision_tier"} <= set(schema["ScoredItem"]["properties"])
    assert "tier_pass" in schema["PolicyUpdate"]["properties"]


def put_policy(api: Any, body: dict[str, Any]) -> Any:
    return api.client.put("/v1/policy", json={**body, "reason": "tier test"}, headers=api.headers("admin"))


def test_policy_put_sets_one_tier_threshold_hand_set_and_audited(serve, own_bundle: Path, bundle: Bundle) -> None:
    with serve(bundle=str(own_bundle)) as api:
        before = api.client.get("/v1/policy", headers=api.headers("read")).json()
        response = put_policy(api, {"tier_pass": {"severe": 0.0}, "qa_sample_rate": 0.001})
        after = response.json()
        scored = api.batch([listing_json(i) for i in range(20)]).json()["items"]
        history = api.client.get("/v1/policy/history", headers=api.headers("read")).json()
        unchanged = put_policy(api, {"tier_pass": {}, "qa_sample_rate": 0.01}).json()  # {} never clears tiers

    assert [t["name"] for t in before["tiers"]] == bundle.tier_names
    assert {t["name"]: t["t_pass"] for t in before["tiers"]} == bundle.policy.tier_pass
    assert all(t["recall_target"] for t in before["tiers"])
    assert response.status_code == 200, response.text
    assert after["policy"]["tier_pass"] == {**before["policy"]["tier_pass"], "severe": 0.0}  # minor kept
    assert after["guarantee_state"] == "hand_set, not certified"
    assert not any(t["certified"] for t in after["tiers"])
    assert "auto_pass" not in {s["decision"] for s in scored}  # severe t_pass 0: nothing can pass
    assert history[0]["new"]["tier_pass"]["severe"] == 0.0 and history[0]["reason"] == "tier test"
    assert unchanged["policy"]["tier_pass"] == after["policy"]["tier_pass"]


@pytest.mark.parametrize(
    "tier_pass",
    [{"counterfeit": 0.1}, {"severe": 1.0}, {"severe": -0.1}, {"severe": "low"}],
)
def test_policy_put_refuses_bad_tier_thresholds_naming_the_field(serve, own_bundle: Path, tier_pass: dict) -> None:
    with serve(bundle=str(own_bundle)) as api:
        before = api.app.state.engine.policy.to_dict()
        response = put_policy(api, {"tier_pass": tier_pass})
        assert response.status_code == 422, response.text
        assert any(e["field"].startswith("tier_pass") for e in response.json()["detail"])
        assert api.app.state.engine.policy.to_dict() == before


# -- start-up: the routing split of the policy in force ----------------------------------------------------


def test_startup_report_is_the_evaluation_split_on_the_reference_rows(bundle: Bundle) -> None:
    # with the text and product matches the rules read
    reference = read_reference(bundle.path, bundle.config.id, bundle.config.listing_columns)
    policy = bundle.policy
    rule_masks = match_rules(reference, policy.rules)[:2]
    assert rule_masks[1].any()  # the review rules on text and product matches act on some reference rows
    if policy.segment_by:
        pytest.skip("the session bundle's policy is segmented; the evaluation frame here is global")
    routing = evaluate_scores(reference, policy, rule_masks=rule_masks)["routing"]
    split = reference_routing(bundle, policy)
    assert split["auto_pass"] == pytest.approx(routing["auto_pass_share"])
    assert split["auto_block"] == pytest.approx(routing["auto_block_share"])
    assert split["human_review"] == pytest.approx(routing["queue_share"])
    lines = routing_report(bundle, policy)
    assert f"auto-pass {split['auto_pass']:.1%}" in lines[0] and policy.version in lines[0]


def test_startup_warns_when_nearly_everything_goes_to_people(bundle: Bundle) -> None:
    closed = dataclasses.replace(
        bundle.policy,
        tier_pass=dict.fromkeys(bundle.tier_names, 0.0),
        provisional=True,
        guarantee={"mode": "tiered", "feasible": False, "message": "Infeasible: too few violations of tier 'minor'"},
    )
    lines = routing_report(bundle, closed)
    assert reference_routing(bundle, closed)["human_review"] > 0.9
    assert len(lines) == 2 and lines[1].startswith("WARNING")
    assert "provisional, not certified" in lines[1] and "too few violations of tier 'minor'" in lines[1]
    open_policy = dataclasses.replace(bundle.policy, tier_pass=dict.fromkeys(bundle.tier_names, 0.999), t_pass=0.99,
                                      t_block=0.999)  # fmt: skip
    assert len(routing_report(bundle, open_policy)) == 1


def test_triage_serve_prints_the_split_before_starting(bundle_dir: Path, tmp_path: Path) -> None:
    from serving.commands import startup_routing
    from serving.settings import Settings

    settings = Settings(bundle=str(bundle_dir), database_url=f"sqlite:///{tmp_path / 'serve.db'}")
    lines = startup_routing(bundle_dir, settings)
    assert "human review" in lines[0] and "reference listings" in lines[0]
    missing = startup_routing(tmp_path / "no-bundle", settings)
    assert missing[0].startswith("WARNING: no servable bundle")


def test_triage_serve_names_the_model_in_force_when_the_log_records_another(
    bundle_dir: Path, untiered_bundle_dir: Path, tmp_path: Path
) -> None:
    """A service whose decision log records a promoted model serves that one, and `triage serve` says so
    rather than printing the split of the bundle it was pointed at."""
    from serving.commands import _open_store, bundle_in_force
    from serving.settings import Settings

    root = tmp_path / "models"
    root.mkdir()
    pointed, promoted = root / "newest", root / "promoted"
    shutil.copytree(bundle_dir, pointed)  # reloadable bundles must lie under the models directory
    shutil.copytree(untiered_bundle_dir, promoted)
    settings = Settings(bundle=str(pointed), models_dir=str(root), database_url=f"sqlite:///{tmp_path / 'serve.db'}")
    assert bundle_in_force(pointed, settings) == (pointed, None)  # nothing recorded: the configured bundle
    with _open_store(settings) as store:
        store.record_model_change("promote", "ops", new_model="v-promoted", bundle=str(promoted), reason="gate passed")
    served, note = bundle_in_force(pointed, settings)
    assert served.resolve() == promoted.resolve()
    assert note is not None and "model in force" in note and str(pointed) in note
