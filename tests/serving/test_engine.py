"""The decision engine's fast paths agree with the library functions they stand in for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bundle.load import Bundle
from decision.policy import Policy
from decision.rules import COLUMNAR_RULES_MIN, Rule, match_rules
from serving.engine import DecisionEngine
from serving.explain import PathExplainer

RULES = [
    Rule(
        name="knives",
        action="block",
        kind="term",
        terms=["switchblade", "butterfly knife", "c++"],
        fields=["title", "description"],
    ),
    Rule(
        name="pharma", action="review", kind="category", column="category", values=["Health & Supplements", "pharmacy"]
    ),
    Rule(name="odd", action="review", kind="term", terms=["12.5"], fields=["price", "missing_column"]),
    Rule(name="cheap", action="review", kind="range", column="price", max=10.0),
    Rule(
        name="pricey_blade",
        action="block",
        kind="all",
        all=[
            Rule(name="", action="", kind="term", terms=["switchblade"], fields=["title"]),
            Rule(name="", action="", kind="range", column="price", min=10.0),
        ],
    ),
]

TEXTS = [
    "",
    "A switchblade!",
    "SWITCHBLADE",
    "switchblades",
    "butterfly  knife",
    "butterfly\nknife",
    "c++ book",
    "c++x",
    "xc++",
    "knife",
    None,
    float("nan"),
    12.5,
]
CATEGORIES = ["health supplements", "Health & Supplements", "HEALTH-supplements", "pharmacy ", "books", "", None]


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return Bundle.load(bundle_dir)


def test_per_record_rule_matching_equals_match_rules(bundle: Bundle) -> None:
    rng = np.random.default_rng(0)
    listings = [
        {
            "listing_id": f"L{i}",
            "title": TEXTS[rng.integers(len(TEXTS))],
            "description": TEXTS[rng.integers(len(TEXTS))],
            "category": CATEGORIES[rng.integers(len(CATEGORIES))],
            "price": [12.5, 3.0, None][rng.integers(3)],
        }
        for i in range(400)
    ]
    policy = Policy(version="p", t_pass=0.1, t_block=0.9, rules=RULES)
    engine = DecisionEngine(bundle=bundle, policy=policy)

    block, review, matched = engine.match_rules(listings)  # a batch: the columnar RE2 path
    frame_block, frame_review, frame_matched = match_rules(pd.DataFrame(listings), RULES)
    assert len(listings) >= COLUMNAR_RULES_MIN and block.any() and review.any()
    assert (block == frame_block).all() and (review == frame_review).all() and matched == frame_matched
    for i, listing in enumerate(listings):  # one at a time: the same patterns in Python's re
        one_block, one_review, one_matched = engine.match_rules([listing])
        frame_one = match_rules(pd.DataFrame([listing]), RULES)
        assert (one_block[0], one_review[0], one_matched[0]) == (block[i], review[i], matched[i]), listing
        assert (frame_one[0][0], frame_one[1][0], frame_one[2][0]) == (block[i], review[i], matched[i]), listing


def test_path_attributions_add_up_to_the_model_log_odds(bundle: Bundle, generated_dir: Path) -> None:
    frame = pd.read_parquet(generated_dir / "reviews.parquet").head(500)
    X = bundle.features(frame)
    explainer = PathExplainer(bundle.booster)

    contributions = explainer.contributions(X)

    raw = bundle.booster.predict(X, raw_score=True)
    np.testing.assert_allclose(contributions.sum(axis=1) + explainer.bias, raw, atol=1e-9)
    shap = bundle.contributions(X)  # exact TreeSHAP: the top signal is usually among the path's top 3
    top3 = np.argsort(-contributions, axis=1)[:, :3]
    assert np.mean([s in t for s, t in zip(shap.argmax(axis=1), top3, strict=True)]) > 0.8


def test_path_attributions_of_a_batch_equal_those_of_its_listings_one_by_one(
    bundle: Bundle, generated_dir: Path
) -> None:
    X = bundle.features(pd.read_parquet(generated_dir / "reviews.parquet").head(300))
    explainer = PathExplainer(bundle.booster)

    batch = explainer.contributions(X)  # above the gather size: the sparse product
    one_by_one = np.vstack([explainer.contributions(X[i : i + 1]) for i in range(len(X))])

    assert len(X) > 64
    np.testing.assert_array_equal(batch, one_by_one)


def test_treeshap_reasons_can_be_chosen(bundle: Bundle, generated_dir: Path) -> None:
    listings = pd.read_parquet(generated_dir / "reviews.parquet").head(3)[bundle.config.listing_columns]
    records = listings.to_dict("records")
    exact = DecisionEngine.from_bundle(bundle, reasons="treeshap").score(records)
    fast = DecisionEngine.from_bundle(bundle, reasons="path").score(records)

    np.testing.assert_array_equal(exact.risk, fast.risk)
    shap = bundle.contributions(bundle.features(listings))
    assert exact.reasons[0][0]["contribution"] == pytest.approx(shap[0].max(), abs=1e-4)


def test_the_engine_loaded_at_startup_is_kept_out_of_the_cyclic_garbage_collector(bundle_dir: Path) -> None:
    """Its objects live as long as the bundle: full collections must not walk them on every batch."""
    import gc

    from serving.models import startup_engine

    before = gc.get_freeze_count()
    engine = startup_engine(bundle_dir)

    assert engine.ready and gc.get_freeze_count() > before
    assert all(obj is not engine for obj in gc.get_objects())  # frozen: in no generation
