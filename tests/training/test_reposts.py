"""Re-posts of rejected listings and the catalogue of known products: the world the product-identification
benchmarks are measured on, and the oracle's exactness on it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.generate import (
    AMBIGUITY_SD,
    HEALTH_CLAIMS,
    OBFUSCATED_TERMS,
    OBFUSCATIONS,
    PROHIBITED_TERMS,
    REASONS,
    REPOST_EDITS,
    REPOST_GAP_DAYS,
    REPOST_SHARE,
    _expit,
    _Merchants,
    _merchants,
    _Outcome,
    _outcome,
    _repost_outcome,
    _review_seconds,
    _Rows,
    _rows,
    _seconds_likelihood,
    _violation_logits,
    _window,
    catalogue,
    generate,
    write_dataset,
)

ROWS, SEED = 100_000, 21
START, MONTHS = "2025-01-01", 12
CATALOGUE_CSV = Path(__file__).resolve().parents[2] / "configs" / "catalogue.csv"


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate(ROWS, seed=SEED, start=START, months=MONTHS)


@pytest.fixture(scope="module")
def pairs(data: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    """One row per re-post: its columns, its original's (suffix `_o`) and its oracle columns."""
    reviews, oracle = data
    is_repost = oracle["repost_of"] != ""
    reposts = reviews[is_repost].join(oracle.loc[is_repost, oracle.columns.drop("listing_id")])
    originals = reviews.set_index("listing_id").add_suffix("_o")
    return reposts.join(originals, on="repost_of", how="left")


def _sentences(text: str) -> list[str]:
    return re.split(r"(?<=\.) ", text)


def _obfuscations(text: str) -> set[str]:
    return {term for term in OBFUSCATED_TERMS if term.lower() in text.lower()}


def test_reposts_take_their_share_and_keep_the_row_count(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reviews, oracle = data
    is_repost = oracle["repost_of"] != ""
    assert len(reviews) == ROWS and reviews["listing_id"].is_unique
    assert is_repost.sum() == round(REPOST_SHARE * ROWS)
    rejected_first_listings = ((reviews["label"] == 1) & ~is_repost).sum()
    assert 0.10 < is_repost.sum() / rejected_first_listings < 0.25  # about one rejection in six comes back
    assert (oracle.loc[~is_repost, "repost_edit"] == "").all() and not oracle.loc[~is_repost, "repost_linked"].any()
    assert reviews["created_at"].is_monotonic_increasing
    assert (reviews["reviewed_at"] > reviews["created_at"]).all()


def test_each_original_was_rejected_and_reviewed_before_its_repost(pairs: pd.DataFrame) -> None:
    assert pairs["label_o"].notna().all()  # the original is in the frame
    assert (pairs["label_o"] == 1).all()
    assert pairs["repost_of"].is_unique  # a listing comes back at most once
    gap = (pairs["created_at"] - pairs["reviewed_at_o"]).dt.total_seconds() / 86_400
    low, high = REPOST_GAP_DAYS
    assert gap.min() >= low - 1 / 86_400 and gap.max() <= high
    assert gap.quantile(0.1) < 1 and gap.quantile(0.9) > 7  # hours to weeks
    assert (pairs["repost_of"] < pairs["listing_id"]).all()  # ids follow creation time


def test_reposts_keep_the_product_and_come_from_the_seller_or_a_second_account(pairs: pd.DataFrame) -> None:
    for column in ("category", "market", "image_count", "has_certificate"):
        assert (pairs[column] == pairs[f"{column}_o"]).all(), column
    linked = pairs["repost_linked"]
    assert 0.2 < linked.mean() < 0.5
    assert (pairs.loc[~linked, "merchant_id"] == pairs.loc[~linked, "merchant_id_o"]).all()
    fresh = pairs[linked]
    assert (fresh["merchant_id"] != fresh["merchant_id_o"]).all() and fresh["merchant_id"].is_unique
    assert fresh["merchant_id"].str.fullmatch(r"M\d{6}").all()
    since = (fresh["created_at"] - fresh["reviewed_at_o"]).dt.total_seconds() / 86_400
    assert (fresh["merchant_tenure_days"] <= np.minimum(since, 14) + 0.01).all()  # joined after the rejection
    assert fresh["merchant_tenure_days"].median() < 5
    same = pairs[~linked]
    elapsed = (same["created_at"] - same["created_at_o"]).dt.total_seconds() / 86_400
    np.testing.assert_allclose(same["merchant_tenure_days"], same["merchant_tenure_days_o"] + elapsed, atol=0.011)


def test_merchant_of_a_second_account_lists_only_the_repost(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reviews, oracle = data
    second = reviews.loc[oracle["repost_linked"], "merchant_id"]
    assert (reviews["merchant_id"].isin(second).sum()) == len(second)


def test_edits_are_as_recorded(pairs: pd.DataFrame) -> None:
    edits = pairs["repost_edit"].str.split("|").map(lambda names: set(names) - {""})
    assert set().union(*edits) == set(REPOST_EDITS)
    has = {name: edits.map(lambda names, n=name: n in names) for name in REPOST_EDITS}
    unchanged = pairs[~has["price"]]
    assert (unchanged["price"] == unchanged["price_o"]).all()
    changed = pairs[has["price"]]
    relative = (changed["price"] / changed["price_o"] - 1).abs()
    assert relative.max() <= 0.2 + 0.01 and ((relative >= 0.02 - 0.01) | (changed["price_o"] <= 0.52)).all()
    spelled = has["spelling"]
    for column, edit in (("title", "title"), ("description", "description")):
        kept = pairs[~has[edit] & ~spelled]
        assert (kept[column] == kept[f"{column}_o"]).all(), column
        edited = pairs[has[edit]]
        assert (edited[column] != edited[f"{column}_o"]).all(), column
    respelled = pairs[spelled]
    before = (respelled["title_o"] + " " + respelled["description_o"]).map(_obfuscations)
    after = (respelled["title"] + " " + respelled["description"]).map(_obfuscations)
    assert (after != before).all() and (after.map(len) > 0).all()
    described = pairs[has["description"] & ~spelled]
    changed_sentences = [
        len(set(_sentences(new)) ^ set(_sentences(old)))
        for new, old in zip(described["description"], described["description_o"], strict=True)
    ]
    assert max(changed_sentences) <= 2  # reordered, or one sentence swapped for another
    assert min(changed_sentences) == 0 and changed_sentences.count(2) > 0


def test_some_reposts_are_verbatim_and_some_are_edited_every_way(pairs: pd.DataFrame) -> None:
    count = pairs["repost_edit"].map(lambda edit: len(edit.split("|")) if edit else 0)
    assert 0.03 < (count == 0).mean() < 0.2
    assert 0.1 < (pairs["repost_edit"] == "|".join(REPOST_EDITS)).mean() < 0.3
    assert (count <= 2).mean() > 0.5


def test_repost_risk_follows_the_originals_verdict(pairs: pd.DataFrame) -> None:
    """All of a re-post's risk is on its original's recorded reason, and it sums as for any listing.

    A reason other than "other" is never a wrongful rejection, so the re-post's violation is certain and
    its risk is 1 - f(p) >= 1 - max flip probability (0.1003)."""
    for risk in ("true_risk", "limit_risk"):
        per_reason = pairs[[f"{risk}_{reason}" for reason in REASONS]].to_numpy()
        np.testing.assert_allclose(per_reason.sum(axis=1), pairs[risk], rtol=1e-12, atol=0)
        on_reason = per_reason[np.arange(len(pairs)), pairs["violation_reason_o"].map(REASONS.index)]
        np.testing.assert_array_equal(on_reason, pairs[risk])
    certain = pairs["violation_reason_o"] != "other"
    assert certain.sum() > 100 and (pairs.loc[certain, "true_risk"] >= 1 - 0.1003).all()
    assert (pairs.loc[~certain, "true_risk"] < 0.99).any()  # an "other" rejection may have been wrong
    rejected = pairs[pairs["label"] == 1]
    assert (rejected["violation_reason"] == rejected["violation_reason_o"]).all()


def _within(observed: float, expected: np.ndarray) -> bool:
    """The count `observed` is within 4 binomial standard deviations of the sum of probabilities `expected`."""
    return abs(observed - expected.sum()) < 4 * np.sqrt((expected * (1 - expected)).sum())


def test_oracle_is_calibrated_on_reposts(pairs: pd.DataFrame) -> None:
    """Labels of re-posts ~ Bernoulli(true_risk); limit_risk = E[true_risk | what is observable]."""
    assert _within(pairs["label"].sum(), pairs["true_risk"].to_numpy())
    assert _within(pairs["label"].sum(), pairs["limit_risk"].to_numpy())
    other = pairs["violation_reason_o"] == "other"
    assert _within(pairs.loc[other, "label"].sum(), pairs.loc[other, "true_risk"].to_numpy())
    gap = pairs["true_risk"] - pairs["limit_risk"]
    assert abs(gap.mean()) < 4 * gap.std() / np.sqrt(len(gap))
    assert pairs["label"].mean() > 0.8 and pairs["true_risk"].mean() > 0.8  # mostly rejected again


def _latents(rows: int, seed: int) -> tuple[_Merchants, _Rows, np.ndarray, np.ndarray]:
    """The generator's first draws, in `generate`'s order (as in test_generate)."""
    rng = np.random.default_rng(seed)
    _, span, drift_start = _window(START, MONTHS)
    merchants = _merchants(rng, max(1, rows // 20), span)
    listings = _rows(rng, merchants, rows, span, drift_start)
    ambiguity = rng.normal(0.0, AMBIGUITY_SD, rows)
    return merchants, listings, ambiguity, rng.choice(rows, round(REPOST_SHARE * rows), replace=False)


def _original_rows(oracle: pd.DataFrame, rows: int, room: np.ndarray, originals: pd.Series) -> np.ndarray:
    """Each original's row among `_latents`' listings (re-posts took the place of the first of `room`)."""
    ordinary = oracle.loc[oracle["repost_of"] == "", "listing_id"].reset_index(drop=True)
    kept = np.ones(rows, dtype=bool)
    kept[room[: rows - len(ordinary)]] = False
    position = pd.Series(np.arange(len(ordinary)), index=ordinary)
    return np.flatnonzero(kept)[position[originals].to_numpy()]


def _repeat(listings: _Rows, row: int, draws: int) -> _Rows:
    return type(listings)(*(field[np.full(draws, row)] for field in listings))


def test_seconds_likelihood_is_the_frequency_of_the_recorded_review_time() -> None:
    rng = np.random.default_rng(5)
    draws, cat, p = 2_000_000, np.zeros(2_000_000, dtype=np.int64), np.full(2_000_000, 0.3)
    rejected = np.ones(draws, dtype=np.int64)
    seconds = _review_seconds(rng, cat, _Outcome(rejected, rejected, p, p, rejected.astype(bool)))
    for value in (float(np.quantile(seconds, q)) for q in (0.001, 0.5, 0.99)):
        expected = _seconds_likelihood(np.array([value]), cat[:1], p[:1])[0]
        share = (seconds == value).mean()
        assert abs(share - expected) < 4 * np.sqrt(expected / draws), value


def test_repost_oracle_matches_a_simulation_of_the_original_and_its_repost(
    data: tuple[pd.DataFrame, pd.DataFrame], pairs: pd.DataFrame
) -> None:
    """Monte Carlo with the generator's own functions, for re-posts of "other" rejections (the uncertain case).

    true_risk: latents fixed, the original's outcome redrawn; among draws with its recorded reason, the
    share of re-posts `_repost_outcome` rejects. limit_risk: the ambiguity redrawn as well; each draw
    with the recorded reason is weighted by the likelihood of the original's recorded review time (itself
    checked against the sampler above). Both within 4 standard errors.
    """
    merchants, listings, ambiguity, room = _latents(ROWS, SEED)
    uncertain = pairs[pairs["violation_reason_o"] == "other"]
    picked = uncertain.iloc[[int(np.argmin(uncertain["true_risk"])), int(np.argmax(uncertain["limit_risk"] < 0.9))]]
    rows = _original_rows(data[1], ROWS, room, picked["repost_of"])
    rng, draws, other = np.random.default_rng(9), 400_000, REASONS.index("other") + 1
    for row, (_, repost) in zip(rows, picked.iterrows(), strict=True):
        fixed = _expit(_violation_logits(_repeat(listings, row, draws), merchants, np.full(draws, ambiguity[row])))
        original = _outcome(rng, fixed)
        same = original.reason == other
        relisted = _repost_outcome(rng, fixed[same], type(original)(*(f[same] for f in original))).label
        se = np.sqrt(repost["true_risk"] * (1 - repost["true_risk"]) / same.sum())
        assert abs(relisted.mean() - repost["true_risk"]) < 4 * se, row
        redrawn = rng.normal(0.0, AMBIGUITY_SD, draws)
        probs = _expit(_violation_logits(_repeat(listings, row, draws), merchants, redrawn))
        original = _outcome(rng, probs)
        same = original.reason == other
        weight = _seconds_likelihood(
            np.full(same.sum(), repost["review_seconds_o"]),
            listings.category[[row] * same.sum()],
            original.violation_prob[same],
        )
        relisted = _repost_outcome(rng, probs[same], type(original)(*(f[same] for f in original))).label
        estimate = np.average(relisted, weights=weight)
        effective = weight.sum() ** 2 / (weight**2).sum()
        se = np.sqrt(repost["limit_risk"] * (1 - repost["limit_risk"]) / effective)
        assert abs(estimate - repost["limit_risk"]) < 4 * se + 1e-3, row


def test_same_seed_same_reposts() -> None:
    first, second = generate(5_000, seed=8), generate(5_000, seed=8)
    pd.testing.assert_frame_equal(first[1], second[1])
    pd.testing.assert_frame_equal(first[0], second[0])
    assert (first[1]["repost_of"] != "").sum() == 50
    assert not generate(5_000, seed=9)[1]["repost_of"].equals(first[1]["repost_of"])


@pytest.mark.parametrize("rows", [1, 10, 150])
def test_tiny_frames_have_few_or_no_reposts(rows: int) -> None:
    reviews, oracle = generate(rows, seed=1)
    assert len(reviews) == rows and len(oracle) == rows
    assert (oracle["repost_of"] != "").sum() <= round(REPOST_SHARE * rows)


def test_catalogue_lists_prohibited_items_to_block_and_health_claims_to_review() -> None:
    entries = catalogue()
    assert list(entries.columns) == ["entry_id", "name", "aliases", "reason", "action"]
    assert entries["entry_id"].is_unique and entries["name"].is_unique
    assert set(entries["name"]) == set(PROHIBITED_TERMS) | set(HEALTH_CLAIMS)
    by_name = entries.set_index("name")
    assert (by_name.loc[list(PROHIBITED_TERMS), "action"] == "block").all()
    assert (by_name.loc[list(PROHIBITED_TERMS), "reason"] == "prohibited_item").all()
    assert (by_name.loc[list(HEALTH_CLAIMS), "action"] == "review").all()
    for name, aliases in by_name["aliases"].items():
        assert isinstance(aliases, list) and aliases and name not in aliases
        assert OBFUSCATIONS[name][0] in aliases and OBFUSCATIONS[name][1] not in aliases  # the catalogue lags
    assert "knuckle duster" in by_name.at["brass knuckles", "aliases"]


def _read_catalogue(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame.assign(aliases=frame["aliases"].str.split("|"))


def test_shipped_catalogue_is_the_generated_one(tmp_path: Path) -> None:
    """configs/catalogue.csv is `write_catalogue`'s output; regenerate it when the pools change:
    python -c "from training.generate import write_catalogue; write_catalogue('configs/catalogue.csv')"."""
    expected = catalogue()
    pd.testing.assert_frame_equal(_read_catalogue(CATALOGUE_CSV), expected, check_dtype=False)
    paths = write_dataset(tmp_path, rows=500, seed=1)
    pd.testing.assert_frame_equal(_read_catalogue(paths["catalogue"]), expected, check_dtype=False)


def test_some_prohibited_listings_use_spellings_the_catalogue_lacks(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reviews, _ = data
    entries = catalogue()
    known = [*entries["name"], *(alias for aliases in entries["aliases"] for alias in aliases)]
    pattern = "|".join(re.escape(term) for term in sorted(known, key=len, reverse=True))
    prohibited = reviews[reviews["violation_reason"] == "prohibited_item"]
    text = prohibited["title"] + " " + prohibited["description"]
    matched = text.str.contains(pattern, case=False, regex=True)
    assert matched.mean() > 0.8
    assert (~matched).sum() >= 5
