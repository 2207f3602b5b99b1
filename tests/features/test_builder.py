"""FeatureBuilder: stable float32 columns, exact save/load, serving parity, invariance and direction."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import features.builder as builder_module
from features.builder import FeatureBuilder
from features.config import DataConfig
from features.lexicon import count_hits
from features.merchant import MERCHANT_FEATURES, merchant_history
from features.text import POLICY_OWNED_TERMS
from features.validate import DataValidationError, validate_history
from training.generate import generate

CONFIG = DataConfig()
WORDS = np.array(
    [
        "new",
        "vintage",
        "leather",
        "cotton",
        "steel",
        "black",
        "white",
        "red",
        "blue",
        "large",
        "small",
        "set",
        "pack",
        "box",
        "gift",
        "premium",
        "soft",
        "portable",
        "wireless",
        "charger",
        "phone",
        "case",
        "lamp",
        "chair",
        "toy",
        "doll",
        "cream",
        "serum",
    ]
)
BAD = np.array(["switchblade", "ivory carving", "gucci", "rolex", "cures cancer", "miracle weight loss"])
CATEGORIES = np.array(["fashion", "watches", "electronics", "pharmacy", "home"])


def synthetic(n: int = 800, seed: int = 0) -> pd.DataFrame:
    """A small validated history: violations carry policy words, low prices and risky merchants."""
    rng = np.random.default_rng(seed)
    merchant = rng.integers(0, 40, n)
    risky = rng.random(40) < 0.2
    bad = rng.random(n) < np.where(risky[merchant], 0.5, 0.05)
    words = WORDS[rng.integers(0, len(WORDS), (n, 8))]
    title = np.array([" ".join(w[:4]) for w in words], dtype=object)
    title[bad] = [f"{b} {t}" for b, t in zip(BAD[rng.integers(0, len(BAD), bad.sum())], title[bad], strict=True)]
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 200, n)), unit="D")
    raw = pd.DataFrame(
        {
            "listing_id": [f"L{i:05d}" for i in range(n)],
            "merchant_id": [f"M{m}" for m in merchant],
            "created_at": created,
            "reviewed_at": created + pd.to_timedelta(rng.uniform(0.1, 5, n), unit="D"),
            "title": title,
            "description": [" ".join(w[4:]) for w in words],
            "brand": np.where(rng.random(n) < 0.2, "Gucci", ""),
            "category": CATEGORIES[rng.integers(0, len(CATEGORIES), n)],
            "market": rng.choice(["DE", "FR", "US"], n),
            "price": np.exp(rng.normal(4, 0.7, n)) * np.where(bad, 0.3, 1.0),
            "merchant_tenure_days": rng.uniform(0, 1500, n),
            "image_count": rng.integers(0, 8, n),
            "has_certificate": rng.integers(0, 2, n),
            "label": bad.astype(int),
        }
    )
    raw.loc[rng.choice(n, 20, replace=False), "price"] = np.nan
    return validate_history(raw, CONFIG)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return synthetic()


@pytest.fixture(scope="module")
def fitted(data) -> tuple[FeatureBuilder, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train, rest = data.iloc[:600].reset_index(drop=True), data.iloc[600:].reset_index(drop=True)
    builder = FeatureBuilder(CONFIG, seed=3, min_category_count=5)
    return builder, builder.fit_transform(train, history=data), train, rest


def test_feature_names_are_fixed_and_output_is_float32(fitted, data):
    builder, X_train, _, rest = fitted
    assert builder.feature_names == FeatureBuilder(CONFIG).feature_names  # known before fitting
    assert list(X_train.columns) == builder.feature_names
    assert set(X_train.dtypes) == {np.dtype(np.float32)}
    assert set(builder.categorical_features) <= set(builder.feature_names)
    assert not any("listing_id" in name for name in builder.feature_names)
    shuffled = rest[list(reversed(rest.columns))]
    X = builder.transform(shuffled, history=data)
    assert list(X.columns) == builder.feature_names and set(X.dtypes) == {np.dtype(np.float32)}
    pd.testing.assert_frame_equal(X, builder.transform(rest, history=data))


def test_train_merchant_features_are_point_in_time(fitted, data):
    _, X_train, train, _ = fitted
    expected = merchant_history(train, data, CONFIG).to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(X_train[list(MERCHANT_FEATURES)].to_numpy(), expected)


def test_text_score_on_training_rows_is_out_of_fold():
    """Unique tokens and random labels: a model scoring its own training rows memorises them, an
    out-of-fold score cannot."""
    data = synthetic(600, seed=5)
    rng = np.random.default_rng(0)
    data["title"] = [f"tok{rng.integers(1e9)}x" for _ in range(len(data))]
    data["description"] = ""
    data["label"] = (rng.random(len(data)) < 0.5).astype(np.int8)
    builder = FeatureBuilder(CONFIG)
    oof = builder.fit_transform(data, history=data)["text_score"]
    in_sample = builder.transform(data, history=data)["text_score"]
    assert roc_auc_score(data["label"], in_sample) > 0.95
    assert roc_auc_score(data["label"], oof) < 0.65


def test_text_score_ranks_held_out_violations(fitted):
    """Brand-word violations are the text model's to learn (policy-owned terms are cut out of it)."""
    builder, _, _, rest = fitted
    policy_owned = count_hits(rest["title"] + " " + rest["description"], POLICY_OWNED_TERMS) > 0
    kept = rest[~policy_owned]
    assert roc_auc_score(kept["label"], builder.transform(kept)["text_score"]) > 0.8


def test_save_load_round_trip_is_exact(fitted, data, tmp_path):
    builder, _, _, rest = fitted
    files = builder.save(tmp_path / "state")
    assert {p.suffix for p in files} == {".json", ".npy", ".parquet"}
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == sorted(p.name for p in files)
    loaded = FeatureBuilder.load(tmp_path / "state", CONFIG)
    assert loaded.feature_names == builder.feature_names
    assert loaded.categorical_features == builder.categorical_features
    pd.testing.assert_frame_equal(loaded.transform(rest), builder.transform(rest))
    pd.testing.assert_frame_equal(loaded.transform(rest, history=data), builder.transform(rest, history=data))
    with pytest.raises(ValueError, match="differs"):
        FeatureBuilder.load(tmp_path / "state", DataConfig(numeric=("price",)))


def test_listing_id_changes_nothing(fitted, data):
    builder, X_train, train, rest = fitted
    renamed = rest.assign(listing_id=[f"X{i * 7919 % 100003}" for i in range(len(rest))])
    pd.testing.assert_frame_equal(builder.transform(renamed), builder.transform(rest))
    pd.testing.assert_frame_equal(builder.transform(renamed, history=data), builder.transform(rest, history=data))
    refit = FeatureBuilder(CONFIG, seed=3, min_category_count=5)
    X_renamed = refit.fit_transform(train.assign(listing_id=train["listing_id"] + "-v2"), history=data)
    pd.testing.assert_frame_equal(X_renamed, X_train)


def test_adding_a_prohibited_term_never_lowers_its_count(fitted):
    builder, _, _, rest = fitted
    clean = rest[rest["label"] == 0].reset_index(drop=True)
    spiked = clean.assign(title="switchblade " + clean["title"])
    before, after = builder.transform(clean), builder.transform(spiked)
    assert (after["prohibited_hits"] == before["prohibited_hits"] + 1).all()
    # The term belongs to the monotone count feature; the text model does not see it at all.
    np.testing.assert_array_equal(after["text_score"], before["text_score"])


def test_unknown_category_and_merchant_at_transform_time(fitted):
    builder, _, _, rest = fitted
    odd = rest.head(3).assign(category="space tourism", market="", merchant_id="never-seen")
    X = builder.transform(odd)
    assert (X["category_code"] == 0).all() and (X["market_code"] == 0).all()
    assert (X["merchant_prior_reviews"] == 0).all()
    assert np.isfinite(X["log_price_vs_category"].to_numpy()[odd["price"].notna().to_numpy()]).all()


def test_one_row_without_history(fitted):
    builder, _, _, rest = fitted
    X = builder.transform(rest.iloc[[5]])
    assert X.shape == (1, len(builder.feature_names)) and X.index.tolist() == [5]


def test_small_and_large_batch_paths_agree(fitted, data, monkeypatch):
    builder, _, _, rest = fitted
    odd = rest.copy()
    odd.loc[0, "category"] = "space tourism"
    odd.loc[1, "merchant_id"] = "never-seen"
    odd.loc[2, ["title", "description", "brand"]] = ["", "", ""]
    odd.loc[3, "title"] = "Brass\tKnuckles and an IVORY tusk, Rolex! ÉLÉGANT ß"
    odd.loc[4, "price"] = np.nan
    odd.loc[5, "has_certificate"] = np.nan
    monkeypatch.setattr(builder_module, "SMALL_BATCH_ROWS", 0)
    batch = builder.transform(odd).to_numpy()
    records = builder.transform_records(odd.drop(columns=["label"]).to_dict("records"))
    np.testing.assert_array_equal(records, batch)
    monkeypatch.setattr(builder_module, "SMALL_BATCH_ROWS", 10**6)
    np.testing.assert_array_equal(builder.transform(odd).to_numpy(), batch)


def test_records_equal_frame_on_generated_listings(fitted):
    """A thousand generated listings (with missing values, non-ASCII text and policy terms at word
    edges): the serving path equals the DataFrame path bit for bit, in one batch or one at a time,
    whatever type carries the creation time."""
    builder = copy.copy(fitted[0])
    # weights on every hashed column, so that any difference in any document's n-grams shows
    weights = np.random.default_rng(0).normal(size=builder.text.width)
    builder.text = dataclasses.replace(builder.text, coef=weights)
    frame = generate(1000, seed=4)[0][CONFIG.listing_columns].reset_index(drop=True)
    frame.loc[0, "title"] = None
    frame.loc[1, "description"] = np.nan
    frame.loc[2, ["title", "brand"]] = ["Crème brûlée ÄÖÜ café", "Hermès"]
    frame.loc[3, ["title", "description", "brand"]] = ["a taser-b", "switchblade,", ""]
    frame.loc[4, ["title", "description"]] = ["  tabs\tand\nnewlines  ", "x y z 42 snake_case"]
    frame.loc[5, "price"] = np.nan
    frame.loc[6, ["category", "market"]] = [None, ""]
    expected = builder.transform(frame).to_numpy()  # above SMALL_BATCH_ROWS: the pandas path
    records = frame.to_dict("records")
    np.testing.assert_array_equal(builder.transform_records(records), expected)
    one_at_a_time = np.vstack([builder.transform_records([record]) for record in records[:40]])
    np.testing.assert_array_equal(one_at_a_time, expected[:40])
    for size in (10, 60):  # the text model's per-document and vectorised paths
        np.testing.assert_array_equal(builder.transform_records(records[:size]), expected[:size])
    for created in (lambda t: t.to_pydatetime(), lambda t: t.isoformat(), lambda t: t.tz_localize("UTC").isoformat()):
        retimed = [record | {"created_at": created(record["created_at"])} for record in records]
        np.testing.assert_array_equal(builder.transform_records(retimed), expected)


def test_numbers_in_a_large_batch_convert_as_one_by_one(fitted):
    builder, _, _, rest = fitted
    records = rest[CONFIG.listing_columns].to_dict("records")
    assert len(records) > builder_module.SMALL_BATCH_ROWS
    records[0]["price"] = "12.5"
    records[1]["price"] = None
    records[2]["image_count"] = True
    records[3]["merchant_tenure_days"] = 7
    one_at_a_time = np.vstack([builder.transform_records([record]) for record in records])
    np.testing.assert_array_equal(builder.transform_records(records), one_at_a_time)
    for bad, problem in [("abc", "'abc' is not a number"), (float("inf"), "inf is infinite")]:
        with pytest.raises(DataValidationError, match=problem):
            builder.transform_records([*records[:-1], records[-1] | {"price": bad}])


def test_records_accept_iso_strings_with_time_zones(fitted):
    builder, _, _, rest = fitted
    record = rest.iloc[0][CONFIG.listing_columns].to_dict()
    naive = record | {"created_at": "2025-06-01T12:00:00"}
    aware = record | {"created_at": "2025-06-01T14:00:00+02:00"}
    np.testing.assert_array_equal(builder.transform_records([naive]), builder.transform_records([aware]))


def test_unfitted_builder_refuses_to_transform(data):
    with pytest.raises(RuntimeError, match="not fitted"):
        FeatureBuilder(CONFIG).transform(data.head(2))


def test_feature_groups_decide_the_features(data, tmp_path):
    """Each group switched off removes exactly its features; the rest are the same numbers."""
    train, rest = data.iloc[:600].reset_index(drop=True), data.iloc[600:].reset_index(drop=True)
    full = FeatureBuilder(CONFIG, seed=3, min_category_count=5)
    X_full = full.fit_transform(train, history=data)
    only_text = FeatureBuilder(CONFIG, seed=3, min_category_count=5, feature_groups={"text_model"})
    X_text = only_text.fit_transform(train, history=data)
    removed = set(full.feature_names) - set(only_text.feature_names)
    assert removed == {*MERCHANT_FEATURES, *builder_module.LEXICONS, "brand_is_luxury", builder_module.DISGUISED_HITS}
    pd.testing.assert_frame_equal(X_text, X_full[only_text.feature_names])
    only_text.save(tmp_path / "state")
    assert not (tmp_path / "state" / builder_module.SNAPSHOT_FILE).exists()
    loaded = FeatureBuilder.load(tmp_path / "state", CONFIG)
    assert loaded.feature_groups == {"text_model"}
    pd.testing.assert_frame_equal(loaded.transform(rest), only_text.transform(rest))
    np.testing.assert_array_equal(
        loaded.transform_records(rest.head(3).to_dict("records")), only_text.transform(rest.head(3)).to_numpy()
    )


def test_char_gram_text_score_is_opt_in_and_round_trips(data, tmp_path):
    train, rest = data.iloc[:600].reset_index(drop=True), data.iloc[600:].reset_index(drop=True)
    assert "text_score_chars" not in FeatureBuilder(CONFIG).feature_names  # off unless chosen
    groups = CONFIG.default_feature_groups | {"text_chars"}
    chars = FeatureBuilder(CONFIG, seed=3, min_category_count=5, feature_groups=groups)
    X = chars.fit_transform(train, history=data)
    plain = FeatureBuilder(CONFIG, seed=3, min_category_count=5).fit_transform(train, history=data)
    assert set(X.columns) - set(plain.columns) == {"text_score_chars"}
    assert not np.allclose(X["text_score_chars"], X["text_score"])  # a model of its own, not a copy
    chars.save(tmp_path / "state")
    loaded = FeatureBuilder.load(tmp_path / "state", CONFIG)
    pd.testing.assert_frame_equal(loaded.transform(rest), chars.transform(rest))
    np.testing.assert_allclose(
        loaded.transform_records(rest.head(3).to_dict("records")), chars.transform(rest.head(3)).to_numpy(), rtol=1e-6
    )


def test_feature_groups_the_data_cannot_have_are_refused():
    no_merchant = dataclasses.replace(CONFIG, merchant=None)
    assert "merchant_prior_reviews" not in FeatureBuilder(no_merchant).feature_names
    with pytest.raises(ValueError, match=r"\['merchant_history'\] are not available"):
        FeatureBuilder(no_merchant, feature_groups={"merchant_history", "text_model"})
    with pytest.raises(ValueError, match="unknown feature groups"):
        FeatureBuilder(CONFIG, feature_groups={"prices"})
    with pytest.raises(ValueError, match="no features"):
        FeatureBuilder(
            DataConfig(
                timestamp=None,
                time_order="row",
                reviewed_at=None,
                text=("title",),
                categorical=(),
                numeric=(),
                merchant=None,
            ),
            feature_groups=(),
        )


def test_no_text_columns_give_no_text_features(data):
    config = dataclasses.replace(CONFIG, text=())
    builder = FeatureBuilder(config, min_category_count=5)
    X = builder.fit_transform(data.iloc[:600].reset_index(drop=True), history=data)
    assert not {"text_score", "prohibited_hits", "brand_is_luxury"} & set(X.columns)
    assert builder.transform(data.iloc[600:]).shape == (200, len(builder.feature_names))


def test_category_lookups_equal_mapping_each_value() -> None:
    """`_looked_up` (each distinct value looked up once) equals `Series.map(table).fillna(missing)` on
    missing values, values the table lacks, a NaN in the table, other dtypes and an empty column."""
    from features.builder import _looked_up

    table = {"toys": 3.0, "": 7.0, "books": float("nan"), "1": 4.0}
    for values in (
        pd.Series(["toys", None, "garden", "books", "toys", ""], dtype="string[pyarrow]"),
        pd.Series(["toys", np.nan, "garden"], dtype=object),
        pd.Series([1, 2, 1]),
        pd.Series([], dtype="string[pyarrow]"),
    ):
        expected = values.fillna("").astype("str").map(table).astype("float64").fillna(-1.0).to_numpy()
        np.testing.assert_array_equal(_looked_up(values, table, -1.0), expected)


def test_hit_counts_of_all_lists_in_one_scan_equal_each_list_counted_alone(data) -> None:
    import pyarrow as pa

    from features.builder import LEXICONS
    from features.lexicon import count_hits_lists, count_hits_lowered

    docs = (data["title"] + " " + data["description"]).str.lower().tolist()
    docs += ["", "rolex rolex and a switchblade", "fda approved switchblade", "rolexes", "gucci\tgucci"]
    texts = pa.array(docs, type=pa.large_string())
    lists = [*LEXICONS.values(), ()]  # an empty list matches nothing
    counts = count_hits_lists(texts, lists)
    for got, terms in zip(counts, lists, strict=True):
        assert got.dtype == np.int32 and got.tolist() == count_hits_lowered(texts, terms).tolist()
    assert sum(int(c.sum()) for c in counts) > len(data) // 50  # the generated texts do hold terms
    assert [c.tolist() for c in count_hits_lists(texts[:0], lists)] == [[]] * len(lists)
    assert [c.tolist() for c in count_hits_lists(pa.array(["plain text"] * 3), lists)] == [[0, 0, 0]] * len(lists)


def test_price_against_its_brand_norm(fitted):
    """`log_price_vs_brand`: log price minus the median log price of the brand's training listings (brand
    trimmed and lower-cased); NaN for a listing with no brand, or one seen fewer than min_category_count
    times in training. A counterfeit priced far under its brand's genuine listings scores low."""
    builder, _, train, rest = fitted
    gucci = train[train["brand"] == "Gucci"]
    norm = float(np.median(np.log1p(gucci["price"].dropna().to_numpy())))
    assert builder.brand_price_norms == {"gucci": pytest.approx(norm)}
    odd = rest.head(4).assign(brand=[" GUCCI ", "", "Unheard Of", "gucci"], price=[100.0, 100.0, 100.0, 1.0])
    got = builder.transform(odd)[builder_module.BRAND_PRICE].to_numpy()
    np.testing.assert_allclose(got[[0, 3]], np.log1p([100.0, 1.0]) - norm, rtol=1e-6)
    assert np.isnan(got[1]) and np.isnan(got[2])
    records = builder.transform_records(odd[CONFIG.listing_columns].to_dict("records"))
    column = builder.feature_names.index(builder_module.BRAND_PRICE)
    np.testing.assert_array_equal(records[:, column], builder.transform(odd).to_numpy()[:, column])


def test_a_state_saved_before_brand_prices_loads_without_them(data, tmp_path):
    old = FeatureBuilder(CONFIG, seed=3, min_category_count=5, brand_prices=False)
    old.fit_transform(data.iloc[:600], history=data)
    old.save(tmp_path)
    state_file = tmp_path / "feature_builder.json"
    state = json.loads(state_file.read_text())
    del state["brand_prices"], state["brand_price_norms"]
    state_file.write_text(json.dumps(state))
    loaded = FeatureBuilder.load(tmp_path)
    assert builder_module.BRAND_PRICE not in loaded.feature_names and loaded.feature_names == old.feature_names
    rest = data.iloc[600:]
    pd.testing.assert_frame_equal(loaded.transform(rest), old.transform(rest))
