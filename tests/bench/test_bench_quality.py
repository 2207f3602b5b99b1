"""The quality benchmark's own parts: the review-share measure, the real example data, the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from bench.bench_quality import REAL_DATASETS, read_roles, read_rows
from bench.quality_reference import Columns, fit_reference
from bench.realdata.make_realdata import SMS_COLUMNS, YOUTUBE_COLUMNS, sms_table, youtube_table
from training.evaluate import review_share_at_recall

# --- review share at recall ------------------------------------------------------------------------------


def test_review_share_sends_the_fewest_rows_that_reach_the_recall():
    # 4 violations; recall 0.75 may miss one: the one at 0.2, so review is every row >= 0.4
    label = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    risk = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert review_share_at_recall(label, risk, 0.75) == pytest.approx(5 / 8)
    assert review_share_at_recall(label, risk, 0.5) == pytest.approx(3 / 8)  # misses 0.2 and 0.4


def test_rows_tied_with_the_threshold_all_go_to_review():
    label = np.array([1, 0, 0, 1, 1, 0])
    risk = np.array([0.3, 0.3, 0.3, 0.3, 0.9, 0.1])
    # recall 0.6 of 3 may miss one violation, but the lowest two are tied with two negatives at 0.3:
    # a threshold cannot split them, so all four tied rows are reviewed
    assert review_share_at_recall(label, risk, 0.6) == pytest.approx(5 / 6)


def test_recall_one_reviews_down_to_the_least_risky_violation():
    label = np.array([0, 0, 1, 0, 1])
    risk = np.array([0.05, 0.2, 0.3, 0.4, 0.9])
    assert review_share_at_recall(label, risk, 1.0) == pytest.approx(3 / 5)


def test_all_positives_and_no_positives():
    risk = np.linspace(0.0, 1.0, 20)
    assert review_share_at_recall(np.ones(20), risk, 0.95) == pytest.approx(19 / 20)  # misses exactly one
    assert review_share_at_recall(np.ones(10), risk[:10], 0.95) == 1.0  # 5% of 10 is no whole miss
    assert np.isnan(review_share_at_recall(np.zeros(5), risk[:5], 0.95))


def test_recall_fractions_that_are_inexact_in_floating_point_still_allow_their_misses():
    label = np.ones(100)
    risk = np.arange(100) / 100
    assert review_share_at_recall(label, risk, 0.95) == pytest.approx(0.95)
    assert review_share_at_recall(label, risk, 0.99) == pytest.approx(0.99)


# --- the real example data --------------------------------------------------------------------------------


def test_sms_conversion_keeps_every_message_in_file_order():
    sms = sms_table()
    assert list(sms.columns) == SMS_COLUMNS
    assert len(sms) == 5574 and (sms["label"] == "spam").sum() == 747
    assert sms["message_id"].is_unique and sms["message_id"].iloc[0] == "sms-00000"


def test_youtube_conversion_drops_the_undated_rows_and_exact_duplicates():
    youtube, counts = youtube_table()
    assert list(youtube.columns) == YOUTUBE_COLUMNS
    assert counts == {
        "raw_rows": 1956,
        "undated_dropped": 245,
        "undated_spam": 245,
        "duplicates_dropped": 1,
        "rows": 1710,
    }
    assert youtube["comment_id"].is_unique and youtube["published_at"].is_monotonic_increasing
    assert youtube["published_at"].notna().all()


@pytest.mark.parametrize("key", sorted(REAL_DATASETS))
def test_committed_csvs_are_what_the_conversion_makes(key):
    _, data, config = REAL_DATASETS[key]
    roles = read_roles(config)
    rows = read_rows(data, roles)
    made = sms_table() if key == "sms" else youtube_table()[0]
    made_id = "message_id" if key == "sms" else "comment_id"
    assert rows[roles["id"]].tolist() == made[made_id].tolist()
    assert rows["_label"].sum() == (made["label"].isin(["spam", 1])).sum()


# --- the reference ----------------------------------------------------------------------------------------


def _tiny_table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spam = rng.random(rows) < 0.3
    words = np.where(spam, "win a free prize now", "see you at lunch")
    noise = rng.choice(["hello", "ok", "thanks", "later"], rows)
    category = np.where(rng.random(rows) < 0.7, np.where(spam, "risky", "safe"), "other")
    return pd.DataFrame(
        {
            "text": [f"{w} {n}" if rng.random() < 0.8 else n for w, n in zip(words, noise, strict=True)],
            "category": category,
            "price": np.where(spam, 5.0, 50.0) + rng.normal(0, 20, rows),
            "label": spam.astype(int),
        }
    )


@pytest.mark.parametrize(
    "columns",
    [Columns(("text",), ("category",), ("price",)), Columns(text=("text",)), Columns((), ("category",), ("price",))],
    ids=["blend", "text-only", "tabular-only"],
)
def test_reference_fits_on_the_older_rows_and_ranks_the_newer(columns):
    table = _tiny_table()
    train, test = table.iloc[:300], table.iloc[300:]
    reference = fit_reference(train, train["label"].to_numpy(), columns, seed=0)
    risk = reference.predict(test)
    assert risk.shape == (100,) and np.all((risk >= 0) & (risk <= 1))
    assert roc_auc_score(test["label"], risk) > 0.85
    if not columns.tabular:
        assert reference.text_weight == 1.0
    if not columns.text:
        assert reference.text_weight == 0.0


# --- the oracle's columns and the target lines ---------------------------------------------------------------


def _scores(label: np.ndarray, risk: np.ndarray) -> dict[str, float]:
    from bench.bench_quality import scorer_metrics

    return scorer_metrics(label, risk)


@pytest.mark.parametrize("with_limit", [True, False], ids=["limit_risk", "no-limit_risk"])
def test_oracle_join_reports_a_missing_limit_as_not_available(tmp_path, with_limit):
    from bench.bench_quality import _join_oracle
    from bench.quality_report import check_targets

    rng = np.random.default_rng(0)
    label = (rng.random(200) < 0.3).astype(int)
    test = pd.DataFrame({"listing_id": [f"l{i}" for i in range(200)], "label": label})
    test["risk"] = label * 0.3 + rng.random(200)
    test["baseline_risk"] = test["reference_risk"] = label * 0.2 + rng.random(200)
    oracle = pd.DataFrame({"listing_id": test["listing_id"][::-1], "true_risk": label[::-1] * 0.9 + 0.05})
    if with_limit:
        oracle["limit_risk"] = label[::-1] * 0.5 + 0.2
    oracle.to_parquet(tmp_path / "oracle.parquet")
    result = {"scorers": {}, "unavailable": {}}
    joined = _join_oracle(test, tmp_path / "oracle.parquet", result)
    for scorer, column in (("model", "risk"), ("baseline", "baseline_risk"), ("reference", "reference_risk")):
        result["scorers"][scorer] = _scores(label, joined[column].to_numpy())
    for scorer, column in (("limit", "limit_risk"), ("oracle", "true_risk")):
        if column in joined:
            result["scorers"][scorer] = _scores(label, joined[column].to_numpy())
    assert result["scorers"]["oracle"]["roc_auc"] == 1.0  # joined on listing_id, not on position
    lines = "\n".join(check_targets(result))
    assert "MET: model ROC-AUC" in lines and "gap to the oracle (true_risk)" in lines
    if with_limit:
        assert "gap to the limit (limit_risk): ROC-AUC" in lines and "limit" not in result["unavailable"]
    else:
        assert "gap to the limit: n/a (not available: oracle.parquet has no `limit_risk` column)" in lines
