"""Offline scoring of a tiered bundle routes as the service does: every tier's risk, risk_<tier> columns
and the tier behind each decision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bundle.load import Bundle
from decision.policy import DECISIONS, route
from decision.rules import Rule, match_rules
from decision.tiers import risk_column
from features.validate import validate_listings
from serving.engine import DecisionEngine
from training.offline import evaluate_bundle, score_frame


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return Bundle.load(bundle_dir)


@pytest.fixture(scope="module")
def listings(generated_dir: Path, bundle: Bundle) -> pd.DataFrame:
    frame = pd.read_parquet(generated_dir / "reviews.parquet").sample(800, random_state=5).reset_index(drop=True)
    return validate_listings(frame[bundle.config.listing_columns], bundle.config)


def test_score_frame_has_tier_risks_and_routes_with_them(bundle: Bundle, listings: pd.DataFrame) -> None:
    scored = score_frame(bundle, listings)
    names = bundle.tier_names
    assert [c for c in scored.columns] == [bundle.config.id, "risk", *map(risk_column, names), "decision",
                                           "decision_tier"]  # fmt: skip
    tier_risk = scored[[risk_column(n) for n in names]].to_numpy()
    policy = bundle.policy
    block, review, _ = match_rules(listings, policy.rules)
    expected = route(scored["risk"].to_numpy(), policy.t_pass, policy.t_block, block, review, tier_risk,
                     policy.tier_pass_vector(names))  # fmt: skip
    assert scored["decision"].tolist() == [DECISIONS[c] for c in expected]
    passed = scored["decision"] == "auto_pass"
    assert passed.any() and scored.loc[passed, "decision_tier"].isna().all()  # missing: null in a file
    assert set(scored.loc[scored["decision"] != "auto_pass", "decision_tier"].tolist()) <= set(names)


def test_offline_decisions_equal_the_service_decisions(bundle: Bundle, listings: pd.DataFrame) -> None:
    scored = score_frame(bundle, listings)
    engine = DecisionEngine.from_bundle(bundle, seed=0)
    records = listings.to_dict("records")
    served = engine.decide(records, engine.score(records))
    assert [r.decision for r in served] == scored["decision"].tolist()  # audited decisions stay in force
    tier_risk = np.array([[r.tier_risk[n] for n in bundle.tier_names] for r in served])  # type: ignore[index]
    np.testing.assert_allclose(tier_risk, scored[[risk_column(n) for n in bundle.tier_names]].to_numpy(), atol=1e-9)
    offline_tiers = [None if pd.isna(t) else t for t in scored["decision_tier"]]
    assert [r.decision_tier for r in served] == offline_tiers


def test_evaluating_a_tiered_bundle_routes_on_every_tier(bundle_dir: Path, generated_dir: Path, bundle: Bundle) -> None:
    metrics = evaluate_bundle(bundle_dir, generated_dir / "reviews.parquet")
    routing = metrics["routing"]
    assert set(routing["tiers"]) == set(bundle.tier_names)
    assert routing["auto_pass_share"] + routing["queue_share"] + routing["auto_block_share"] == pytest.approx(1.0)


def test_scoring_a_file_on_several_threads_equals_one_thread(
    bundle_dir: Path, generated_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks scored two at a time come back in the file's order with the same numbers as one at a time
    (uneven chunks: the last is shorter)."""
    import training.offline as offline

    monkeypatch.setattr(offline, "SCORE_CHUNK_ROWS", 7_000)
    data = generated_dir / "reviews.parquet"
    one = offline.score_file(bundle_dir, data, tmp_path / "one.parquet", threads=1)
    two = offline.score_file(bundle_dir, data, tmp_path / "two.parquet", threads=2)
    assert one["rows"] == two["rows"] == len(pd.read_parquet(data, columns=["listing_id"])) > 7_000 * 2
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "two.parquet"))
    ids = pd.read_parquet(tmp_path / "two.parquet", columns=["listing_id"])["listing_id"]
    assert ids.tolist() == pd.read_parquet(data, columns=["listing_id"])["listing_id"].astype(str).tolist()
    # the same risks, to the bit, as a bundle loaded as the service loads it scores on the whole table
    bundle = Bundle.load(bundle_dir)
    listings = validate_listings(pd.read_parquet(data), bundle.config)
    np.testing.assert_array_equal(pd.read_parquet(tmp_path / "two.parquet")["risk"], bundle.scores(listings)[0])


def test_rules_are_skipped_only_where_no_rule_of_their_action_could_change_the_decision() -> None:
    """`_open_to_rules` against `route` itself: on random decisions, risks (some not finite), rule
    masks and match-rule hits, keeping only the hits on the open listings gives the same decisions."""
    from training.offline import _open_to_rules

    rng = np.random.default_rng(7)
    n = 4_000
    for actions in ({"review"}, {"block"}, {"review", "block"}):
        risk = np.where(rng.random(n) < 0.05, np.nan, rng.random(n))
        tier_risk = rng.random((n, 2))
        block, review = rng.random(n) < 0.1, rng.random(n) < 0.1
        codes = route(risk, 0.4, 0.8, block, review, tier_risk, np.array([0.6, 0.7]))
        hit_block = (rng.random(n) < 0.3) if "block" in actions else np.zeros(n, bool)
        hit_review = (rng.random(n) < 0.3) if "review" in actions else np.zeros(n, bool)
        everywhere = route(risk, 0.4, 0.8, block | hit_block, review | hit_review, tier_risk, np.array([0.6, 0.7]))
        open_ = _open_to_rules(codes, risk, block, actions)
        assert not open_.all()  # something is skipped
        only_open = route(
            risk, 0.4, 0.8, block | (hit_block & open_), review | (hit_review & open_), tier_risk, np.array([0.6, 0.7])
        )
        np.testing.assert_array_equal(only_open, everywhere)


@pytest.mark.parametrize("action", ["review", "block"])
def test_offline_decisions_with_match_rules_equal_identifying_every_listing(
    bundle: Bundle, listings: pd.DataFrame, action: str
) -> None:
    """A bundle whose match rules hit listings the thresholds would decide: scoring identifies only the
    listings a match could still change, and decides as identifying all of them would."""
    import copy
    from dataclasses import replace

    from features.identify import PRODUCT_MATCH
    from training.offline import decide

    assert bundle.matcher is not None
    matches = bundle.matcher.product_matches(listings, bundle.config.id)
    assert (matches != "").sum() >= 5, "the sample should hold listings that match a rejected one or the catalogue"
    rules = [replace(r, action=action) if PRODUCT_MATCH in r.columns else r for r in bundle.policy.rules]
    risk, tier_risk = bundle.scores(listings)
    assert tier_risk is not None
    # pass most listings, so matches fall on automated decisions too
    tier_pass = {name: float(np.quantile(tier_risk[:, k], 0.8)) for k, name in enumerate(bundle.tier_names)}
    lenient = copy.copy(bundle)
    lenient.policy = replace(bundle.policy, rules=rules, tier_pass=tier_pass, t_pass=1.0, t_block=1.0)
    codes = decide(lenient, listings, risk, tier_risk)
    block, review, _ = match_rules(listings.assign(**{PRODUCT_MATCH: matches}), rules)
    expected = route(risk, 1.0, 1.0, block, review, tier_risk, lenient.policy.tier_pass_vector(bundle.tier_names))
    np.testing.assert_array_equal(codes, expected)
    no_match_block, no_match_review, _ = match_rules(listings, [r for r in rules if PRODUCT_MATCH not in r.columns])
    tier_pass_vector = lenient.policy.tier_pass_vector(bundle.tier_names)
    changed = expected != route(risk, 1.0, 1.0, no_match_block, no_match_review, tier_risk, tier_pass_vector)
    assert changed.any(), "a match rule should change some decision in this sample"


@pytest.mark.parametrize(
    ("term", "category", "match"),
    [
        ("review", "review", "review"),
        ("block", "review", "review"),
        ("review", "block", "block"),
        ("block", "block", "block"),
    ],
)
def test_offline_decisions_equal_every_rule_on_every_listing(
    bundle: Bundle, listings: pd.DataFrame, term: str, category: str, match: str
) -> None:
    """`decide` runs block rules on every listing, review rules on the automated decisions and match rules
    where they could still matter: with block and review rules of every kind, the decisions equal those of
    every rule (product identification included) on every listing, and each kind of rule decides some."""
    import copy
    from dataclasses import replace

    from features.identify import PRODUCT_MATCH
    from training.offline import decide

    assert bundle.matcher is not None
    kinds = {"term": term, "category": category, "match": match}
    rules = [replace(r, action=kinds[r.kind]) if r.kind in kinds else r for r in bundle.policy.rules]
    assert {r.kind for r in rules if r.acts} >= set(kinds), "the shipped policy has term, category and match rules"
    risk, tier_risk = bundle.scores(listings)
    assert tier_risk is not None
    tier_pass = {name: float(np.quantile(tier_risk[:, k], 0.8)) for k, name in enumerate(bundle.tier_names)}
    lenient = copy.copy(bundle)
    lenient.policy = replace(bundle.policy, rules=rules, tier_pass=tier_pass, t_pass=1.0, t_block=1.0)
    tier_pass_vector = lenient.policy.tier_pass_vector(bundle.tier_names)
    matched = listings.assign(**{PRODUCT_MATCH: bundle.matcher.product_matches(listings, bundle.config.id)})

    def every_rule_everywhere(kept: list[Rule]) -> np.ndarray:
        block, review, _ = match_rules(matched, kept)
        return route(risk, 1.0, 1.0, block, review, tier_risk, tier_pass_vector)

    expected = every_rule_everywhere(rules)
    np.testing.assert_array_equal(decide(lenient, listings, risk, tier_risk), expected)
    for kind in kinds:  # each kind of rule changes some decision here: the comparison covers it
        assert (every_rule_everywhere([r for r in rules if r.kind != kind]) != expected).any(), kind
