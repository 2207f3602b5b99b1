"""FeatureBuilder: the one feature builder for training and serving.

`fit_transform(train, history)` fits the state on the training rows and returns their features;
`transform(df, history=None)` applies the fitted state to any other rows; `transform_records`
does the same for a few listings given as dicts (the serving path, no pandas per call).
The output is float32 in the fixed column order `feature_names`, whatever the input column order.

Columns used by convention (when the data config has them): a text column `brand`, a numeric column
`price`, a numeric column `has_certificate` and a categorical column `category`; every other
configured feature column is used generically (text lengths, raw numerics, category codes).

Feature groups (`features.config.FEATURE_GROUPS`) can be switched off, so model selection can ablate
them: `merchant_history` (the point-in-time merchant features), `text_model` (the out-of-fold hashed
word n-gram score `text_score`), `text_chars` (a second out-of-fold score `text_score_chars` on word and
char_wb n-grams, opt-in: dearer to compute) and `lexicons` (lexicon hit counts, `brand_is_luxury` and
`disguised_term_hits`, the risky terms that show only once "Pr.ada" or "sw1tchblade" is read as meant).
By default every group the data supports and the data config allows is on except the opt-in ones
(`DataConfig.default_feature_groups`); the chosen groups are saved with the state and `feature_names`
lists only their features.

Categorical codes (`categorical_features`, LightGBM native categoricals; exported to ONNX) are small
non-negative integers stored as float: 1..K for values seen at least `min_category_count` times in the
training rows (sorted by value), and 0 for everything else: rare in training, unseen, or empty. So
"unknown" has a code the model has trained on, and never NaN.

The listing id is never read; row order matters only for the seeded out-of-fold assignment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features import lexicon
from features.config import FEATURE_GROUPS, LEXICON_HITS, MERCHANT_HISTORY, TEXT_CHARS, TEXT_MODEL, DataConfig
from features.merchant import (
    MERCHANT_FEATURES,
    PRIOR_STRENGTH,
    MerchantUpdates,
    SnapshotLookup,
    merchant_history,
    merchant_snapshot,
    snapshot_cutoff_us,
)
from features.text import TextModel, document_one, documents
from features.validate import DataValidationError

STATE_FILE = "feature_builder.json"
COEF_FILE = "text_coef.npy"
CHARS_COEF_FILE = "text_chars_coef.npy"
CHAR_NGRAMS = (2, 5)
SNAPSHOT_FILE = "merchant_snapshot.parquet"
FORMAT_VERSION = 1
SMALL_BATCH_ROWS = 128  # `transform` hands frames up to this size (and no history) to `transform_records`
BRAND_PRICE = "log_price_vs_brand"  # log price minus the median log price of the brand's training listings
DISGUISED_HITS = "disguised_term_hits"  # risky terms written in disguise (`lexicon.count_disguised_hits`)

LEXICONS: dict[str, tuple[str, ...]] = {
    "prohibited_hits": lexicon.PROHIBITED_TERMS,
    "luxury_brand_hits": lexicon.LUXURY_BRANDS,
    "health_claim_hits": lexicon.HEALTH_CLAIM_PHRASES,
    "certificate_word_hits": lexicon.CERTIFICATE_WORDS,
}
_US_PER_DAY = 86_400 * 1_000_000
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


class FeatureBuilder:
    """Fits and applies every feature; state saves as JSON + .npy + .parquet (no pickle)."""

    def __init__(
        self,
        config: DataConfig,
        seed: int = 0,
        *,
        min_category_count: int = 10,
        text_model: TextModel | None = None,
        prior_strength: float = PRIOR_STRENGTH,
        feature_groups: Iterable[str] | None = None,
        chars_model: TextModel | None = None,
        disguised_hits: bool = True,
        brand_prices: bool = True,
    ):
        self.config = config
        # `disguised_term_hits` joins the lexicon group; states saved before it existed load without it
        self.disguised_hits = disguised_hits
        self.seed = seed
        self.feature_groups = _chosen_groups(config, feature_groups)
        self.min_category_count = min_category_count
        self.prior_strength = prior_strength
        self.text = text_model if text_model is not None else TextModel(seed=seed)
        self.chars = chars_model if chars_model is not None else TextModel(seed=seed, char_ngrams=CHAR_NGRAMS)
        self.brand = "brand" if "brand" in config.text else None
        self.price = "price" if "price" in config.numeric else None
        # `log_price_vs_brand` (a price far under its brand's norm) needs both; states saved before it load
        # without it
        self.brand_prices = brand_prices and bool(self.brand and self.price)
        self.certificate = "has_certificate" if "has_certificate" in config.numeric else None
        self.category = "category" if "category" in config.categorical else None
        self.passthrough = [c for c in config.numeric if c != self.price]
        self.feature_names: list[str] = self._feature_names()
        if not self.feature_names:
            raise ValueError(
                f"no features: feature groups {sorted(self.feature_groups)} and no categorical or numeric "
                f"column give the model nothing to learn from; {config.where()}"
            )
        self.categorical_features: list[str] = [f"{c}_code" for c in config.categorical]
        self.category_codes: dict[str, dict[str, int]] = {}
        self.price_norms: dict[str, float] = {}
        self.global_price_norm: float = math.nan
        self.brand_price_norms: dict[str, float] = {}
        self.snapshot: pd.DataFrame | None = None
        self._lookup: SnapshotLookup | None = None
        self._fitted = False

    def has(self, group: str) -> bool:
        """Whether a switchable feature group is on."""
        return group in self.feature_groups

    def _feature_names(self) -> list[str]:
        names = ["text_score"] if self.has(TEXT_MODEL) else []
        if self.has(TEXT_CHARS):
            names.append("text_score_chars")
        if self.has(LEXICON_HITS):
            names += [*LEXICONS, *(["brand_is_luxury"] if self.brand else [])]
            names += [DISGUISED_HITS] if self.disguised_hits else []
        if self.price:
            names += ["log_price", "log_price_vs_category"]
            names += [BRAND_PRICE] if self.brand_prices else []
        if self.has(MERCHANT_HISTORY):
            names += MERCHANT_FEATURES
        names += self.passthrough
        if self.category and self.certificate:
            names.append("regulated_without_certificate")
        names += [f"{c}_code" for c in self.config.categorical]
        return names

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    # --- fit / transform ---------------------------------------------------------------------------
    def fit_transform(
        self,
        train: pd.DataFrame,
        history: pd.DataFrame | None,
        *,
        merchant: pd.DataFrame | None = None,
        snapshot: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Fit on the training rows; their merchant features come point-in-time from `history`.

        Without `history` (a history too large for one process): `merchant` holds the rows'
        point-in-time merchant features (`MERCHANT_FEATURES` columns, computed where the history is)
        and `snapshot` the `merchant_snapshot` of the whole history."""
        config = self.config
        docs = self._documents(train)
        labels = train[config.label].to_numpy().astype(np.int64)
        text_scores = {}
        for _, name, model in self._text_models():
            text_scores[name] = model.fit_oof(model.vectorize(docs), labels)
        self.category_codes = {c: self._fit_codes(train[c]) for c in config.categorical}
        if self.price:
            self._fit_price_norms(train)
        features = None
        if self.has(MERCHANT_HISTORY):
            if history is not None:
                snapshot = merchant_snapshot(history, config)
            if snapshot is None:
                raise ValueError("merchant history: give the outcomes `history`, or `merchant` and `snapshot`")
            self.snapshot = snapshot
            self._lookup = SnapshotLookup(self.snapshot, self.prior_strength)
            features = self._merchant_features(train, history, merchant)
        self._fitted = True
        return self._assemble(train, docs, text_scores, features)

    def _merchant_features(
        self, df: pd.DataFrame, history: pd.DataFrame | None, merchant: pd.DataFrame | None
    ) -> np.ndarray:
        """Point-in-time merchant features of `df`: given, from `history`, else from the snapshot."""
        if merchant is not None:
            if len(merchant) != len(df):
                raise ValueError(f"merchant features: {len(merchant)} rows for {len(df)} listings")
            return merchant[list(MERCHANT_FEATURES)].to_numpy(dtype=np.float64)
        if history is not None:
            return merchant_history(df, history, self.config, prior_strength=self.prior_strength).to_numpy()
        return self._require_lookup().frame(df, self.config).to_numpy()

    def transform(
        self, df: pd.DataFrame, history: pd.DataFrame | None = None, *, merchant: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Features of any rows: merchant history point-in-time from `history` if given (or the rows'
        own point-in-time `merchant` features, computed elsewhere), else from the snapshot fitted at the
        end of the training history (new listings to score)."""
        self._require_fitted()
        missing = [c for c in self.config.listing_columns if c != self.config.id and c not in df.columns]
        if missing:
            raise DataValidationError([f"column {c!r}: required to build features but missing" for c in missing])
        if history is None and merchant is None and len(df) <= SMALL_BATCH_ROWS:
            # per-call pandas machinery would cost ~10 ms for one row; the records path ~1 ms
            columns = [c for c in self.config.listing_columns if c != self.config.id]
            values = zip(*(df[c].tolist() for c in columns), strict=True)
            matrix = self.transform_records([dict(zip(columns, row, strict=True)) for row in values])
            return pd.DataFrame(matrix, columns=self.feature_names, index=df.index)
        docs = self._documents(df)
        text_scores = {name: model.score_documents(docs) for _, name, model in self._text_models()}
        features = self._merchant_features(df, history, merchant) if self.has(MERCHANT_HISTORY) else None
        return self._assemble(df, docs, text_scores, features)

    def _text_models(self) -> list[tuple[str, str, TextModel]]:
        """(group, feature name, model) of each text score that is on."""
        models = [(TEXT_MODEL, "text_score", self.text), (TEXT_CHARS, "text_score_chars", self.chars)]
        return [m for m in models if self.has(m[0])]

    def transform_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """float32 matrix (len(records) x len(feature_names)) for listings given as dicts, merchant
        history from the snapshot. Same numbers as `transform(pd.DataFrame(records))` without pandas:
        one pass per feature over the batch (the serving path, one listing or a thousand)."""
        self._require_fitted()
        n = len(records)
        if not n:
            return np.zeros((0, len(self.feature_names)), dtype=np.float32)
        config = self.config
        texts = {c: text_column(records, c) for c in (*config.text, *config.categorical)}
        columns: dict[str, Any] = {}
        if self._needs_documents():
            docs = [document_one(values) for values in zip(*(texts[c] for c in config.text), strict=True)]
        for _, name, model in self._text_models():
            columns[name] = model.score(model.vectorize(docs))
        if self.has(LEXICON_HITS):
            counted = pa.array(docs, type=pa.large_string()) if n > SMALL_BATCH_ROWS else docs  # converted once
            columns.update(_lexicon_hits(counted))
            if self.brand:
                brands = [brand.lower() for brand in texts[self.brand]]
                columns["brand_is_luxury"] = _hits_lowered(brands, lexicon.LUXURY_BRANDS) > 0
            if self.disguised_hits:
                columns[DISGUISED_HITS] = lexicon.count_disguised_hits(counted)
        categories = texts[self.category] if self.category else None
        if self.price:
            log_price = _log_price(_numbers(records, self.price))
            if categories is not None:
                norms = np.array([self.price_norms.get(c, self.global_price_norm) for c in categories])
            else:
                norms = np.full(n, self.global_price_norm)
            columns["log_price"] = log_price
            columns["log_price_vs_category"] = log_price - norms
            if self.brand_prices:
                assert self.brand
                get = self.brand_price_norms.get
                columns[BRAND_PRICE] = log_price - np.array([get(_brand_key(b), np.nan) for b in texts[self.brand]])
        if self.has(MERCHANT_HISTORY):
            assert config.merchant and config.timestamp  # a merchant_history builder has both
            created = _all_microseconds([r.get(config.timestamp) for r in records], config.timestamp)
            merchant = self._require_lookup().many(text_column(records, config.merchant), created)
            for i, name in enumerate(MERCHANT_FEATURES):
                columns[name] = merchant[:, i]
        for column in self.passthrough:
            columns[column] = _numbers(records, column)
        if self.category and self.certificate:
            assert categories is not None
            regulated = _regulated(categories)
            certified = _numbers(records, self.certificate) >= 0.5
            columns["regulated_without_certificate"] = regulated & ~certified
        for column in config.categorical:
            codes = self.category_codes[column]
            columns[f"{column}_code"] = [codes.get(value, 0) for value in texts[column]]
        matrix = np.empty((n, len(self.feature_names)), dtype=np.float64)
        for j, name in enumerate(self.feature_names):
            matrix[:, j] = columns[name]
        return matrix.astype(np.float32)

    # --- fitting helpers ---------------------------------------------------------------------------
    def _fit_codes(self, values: pd.Series) -> dict[str, int]:
        counts = values.fillna("").astype("str").value_counts()
        kept = sorted(v for v, n in counts.items() if n >= self.min_category_count and v != "")
        return {v: i + 1 for i, v in enumerate(kept)}

    def _fit_price_norms(self, train: pd.DataFrame) -> None:
        log_price = _log_price(train[self.price].to_numpy(dtype=np.float64))
        frame = pd.DataFrame({"log_price": log_price})
        self.global_price_norm = float(np.nanmedian(log_price)) if np.isfinite(log_price).any() else 0.0
        if self.category:
            frame["category"] = train[self.category].fillna("").astype("str").to_numpy()
            grouped = frame.dropna().groupby("category")["log_price"]
            medians, counts = grouped.median(), grouped.size()
            # a norm from a handful of rows is noise: rare categories use the global norm, as unseen ones do
            self.price_norms = {str(k): float(v) for k, v in medians.items() if counts[k] >= self.min_category_count}
        if self.brand_prices:
            assert self.brand
            brands = pd.DataFrame({"brand": _brand_keys(train[self.brand]).to_numpy(), "log_price": log_price})
            grouped = brands[brands["brand"] != ""].dropna().groupby("brand")["log_price"]
            medians, counts = grouped.median(), grouped.size()
            self.brand_price_norms = {
                str(k): float(v) for k, v in medians.items() if counts[k] >= self.min_category_count
            }

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("FeatureBuilder is not fitted: call fit_transform or load a saved state")

    def live_merchant_updates(self) -> MerchantUpdates | None:
        """Serve merchant history live: from now on new listings see the snapshot plus the outcomes
        added to the returned `MerchantUpdates` (those reviewed after the snapshot's cutoff), with the
        point-in-time rule of `merchant_history`. The same object on every call; None when the
        merchant_history group is off."""
        if self.snapshot is None:
            return None
        lookup = self._require_lookup()
        if lookup.updates is None:
            updates = MerchantUpdates(snapshot_cutoff_us(self.snapshot))
            self._lookup = SnapshotLookup(self.snapshot, self.prior_strength, updates)
        return self._require_lookup().updates

    @property
    def merchant_updates(self) -> MerchantUpdates | None:
        """The live updates `live_merchant_updates` attached (None while merchant history is frozen)."""
        return self._lookup.updates if self._lookup is not None else None

    def _require_lookup(self) -> SnapshotLookup:
        self._require_fitted()
        assert self._lookup is not None  # fitted with merchant_history on
        return self._lookup

    def _documents(self, df: pd.DataFrame) -> list[str]:
        """The rows' documents when a text group is on (else none are needed)."""
        return documents(df, self.config.text) if self._needs_documents() else []

    def _needs_documents(self) -> bool:
        return any(self.has(group) for group in (TEXT_MODEL, TEXT_CHARS, LEXICON_HITS))

    # --- assembling --------------------------------------------------------------------------------
    def _assemble(
        self, df: pd.DataFrame, docs: list[str], text_scores: dict[str, np.ndarray], merchant: np.ndarray | None
    ) -> pd.DataFrame:
        """The feature frame; `text_scores` holds the text scores that are on, `merchant` is None when off."""
        config = self.config
        columns: dict[str, np.ndarray] = dict(text_scores)
        if self.has(LEXICON_HITS):
            doc_array = pa.array(docs, type=pa.large_string())
            columns.update(_lexicon_hits(doc_array))
            if self.brand:
                columns["brand_is_luxury"] = lexicon.count_hits(df[self.brand], lexicon.LUXURY_BRANDS) > 0
            if self.disguised_hits:
                columns[DISGUISED_HITS] = lexicon.count_disguised_hits(doc_array)
        if self.price:
            log_price = _log_price(df[self.price].to_numpy(dtype=np.float64))
            columns["log_price"] = log_price
            columns["log_price_vs_category"] = log_price - self._price_norm_array(df)
            if self.brand_prices:
                assert self.brand
                columns[BRAND_PRICE] = log_price - _looked_up(
                    _brand_keys(df[self.brand]), self.brand_price_norms, np.nan
                )
        if merchant is not None:
            for i, name in enumerate(MERCHANT_FEATURES):
                columns[name] = merchant[:, i]
        for column in self.passthrough:
            columns[column] = df[column].to_numpy(dtype=np.float64)
        if self.category and self.certificate:
            regulated = lexicon.is_regulated_category(df[self.category])
            certified = df[self.certificate].to_numpy(dtype=np.float64) >= 0.5
            columns["regulated_without_certificate"] = regulated & ~certified
        for column in config.categorical:
            columns[f"{column}_code"] = self._codes_array(column, df[column])
        matrix = np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in self.feature_names])
        return pd.DataFrame(matrix.astype(np.float32), columns=self.feature_names, index=df.index)

    def _price_norm_array(self, df: pd.DataFrame) -> np.ndarray:
        if not self.category:
            return np.full(len(df), self.global_price_norm)
        return _looked_up(df[self.category], self.price_norms, self.global_price_norm)

    def _codes_array(self, column: str, values: pd.Series) -> np.ndarray:
        return _looked_up(values, self.category_codes[column], 0.0)

    # --- persistence -------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> list[Path]:
        """Write the fitted state as JSON + .npy + .parquet; returns the files written."""
        self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "min_category_count": self.min_category_count,
            "prior_strength": self.prior_strength,
            "feature_groups": sorted(self.feature_groups),
            "feature_names": self.feature_names,
            "disguised_hits": self.disguised_hits,
            "brand_prices": self.brand_prices,
            "brand_price_norms": self.brand_price_norms,
            "categorical_features": self.categorical_features,
            "category_codes": self.category_codes,
            "price_norms": self.price_norms,
            "global_price_norm": self.global_price_norm,
            "text_model": self.text.params(),
        }
        if self.has(TEXT_CHARS):
            state["chars_model"] = self.chars.params()
        paths = [directory / STATE_FILE, directory / COEF_FILE]
        paths[0].write_text(json.dumps(state, indent=2, sort_keys=True))
        np.save(paths[1], self.text.coef, allow_pickle=False)
        if self.has(TEXT_CHARS):
            paths.append(directory / CHARS_COEF_FILE)
            np.save(paths[-1], self.chars.coef, allow_pickle=False)
        if self.snapshot is not None:  # merchant_history on
            paths.append(directory / SNAPSHOT_FILE)
            self.snapshot.to_parquet(paths[-1])
        return paths

    @classmethod
    def load(cls, directory: str | Path, config: DataConfig | None = None) -> FeatureBuilder:
        """Rebuild a fitted builder from `save`'s files. A given config must match the saved roles."""
        directory = Path(directory)
        path = directory / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"feature state not found: {path}")
        state = json.loads(path.read_text())
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported feature state format {state.get('format_version')!r}")
        saved = DataConfig.from_dict(state["config"])
        if config is not None and _feature_roles(config) != _feature_roles(saved):
            raise ValueError(f"{path}: the given data config differs from the one the features were fitted with")
        text = TextModel.from_params(state["text_model"], np.load(directory / COEF_FILE, allow_pickle=False))
        chars = None
        if "chars_model" in state:
            chars = TextModel.from_params(
                state["chars_model"], np.load(directory / CHARS_COEF_FILE, allow_pickle=False)
            )
        builder = cls(
            config or saved,
            seed=state["seed"],
            min_category_count=state["min_category_count"],
            text_model=text,
            prior_strength=state["prior_strength"],
            feature_groups=state.get("feature_groups"),  # states written before groups existed had all on
            chars_model=chars,
            disguised_hits=state.get("disguised_hits", False),
            brand_prices=state.get("brand_prices", False),
        )
        if builder.feature_names != state["feature_names"]:
            raise ValueError(f"{path}: saved feature names do not match this code's feature list")
        builder.category_codes = {c: {str(k): int(v) for k, v in m.items()} for c, m in state["category_codes"].items()}
        builder.price_norms = {str(k): float(v) for k, v in state["price_norms"].items()}
        builder.global_price_norm = float(state["global_price_norm"])
        builder.brand_price_norms = {str(k): float(v) for k, v in state.get("brand_price_norms", {}).items()}
        if builder.has(MERCHANT_HISTORY):
            builder.snapshot = pd.read_parquet(directory / SNAPSHOT_FILE)
            builder._lookup = SnapshotLookup(builder.snapshot, builder.prior_strength)
        builder._fitted = True
        return builder


def _chosen_groups(config: DataConfig, requested: Iterable[str] | None) -> frozenset[str]:
    """The requested feature groups (default: every group the data supports and the config allows);
    a group the data cannot have, or the config switched off, is an error, never silently dropped."""
    available = config.feature_groups
    if requested is None:
        return config.default_feature_groups
    chosen = frozenset(requested)
    unknown = sorted(chosen - set(FEATURE_GROUPS))
    if unknown:
        raise ValueError(f"unknown feature groups {unknown} (known: {list(FEATURE_GROUPS)})")
    unavailable = sorted(chosen - available)
    if unavailable:
        raise ValueError(
            f"feature groups {unavailable} are not available for this data config (available: {sorted(available)}; "
            "merchant_history needs a merchant column and timestamps, text groups need text columns, "
            "and the config's `features:` can switch groups off)"
        )
    return chosen


def _feature_roles(config: DataConfig) -> tuple[Any, ...]:
    return (config.id, config.merchant, config.timestamp, config.text, config.categorical, config.numeric)


def _log_price(price: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(price, 0.0))


def _lexicon_hits(texts: list[str] | pa.Array) -> dict[str, np.ndarray]:
    """Each of LEXICONS' hit counts of lower-cased documents: a compiled Python pattern per text for a
    small batch, one RE2 scan for all the lists (`lexicon.count_hits_lists`) above `SMALL_BATCH_ROWS`."""
    if isinstance(texts, pa.Array):
        return dict(zip(LEXICONS, lexicon.count_hits_lists(texts, list(LEXICONS.values())), strict=True))
    return {name: _hits_lowered(texts, terms) for name, terms in LEXICONS.items()}


def _hits_lowered(texts: list[str] | pa.Array, terms: tuple[str, ...]) -> np.ndarray:
    """Whole-word hit counts of lower-cased texts: a compiled Python pattern per text for a small
    batch, pyarrow's RE2 kernel (as `transform` uses) above `SMALL_BATCH_ROWS`."""
    if isinstance(texts, pa.Array) or len(texts) > SMALL_BATCH_ROWS:
        return lexicon.count_hits_lowered(texts, terms)
    pattern = lexicon.compile_terms(terms)
    return np.array([len(pattern.findall(text)) for text in texts], dtype=np.int32)


def _regulated(categories: list[str]) -> np.ndarray:
    """`lexicon.is_regulated_one` of each category, computed once per distinct name."""
    flags: dict[str, bool] = {}
    out = np.empty(len(categories), dtype=bool)
    for i, category in enumerate(categories):
        flag = flags.get(category)
        if flag is None:
            flag = flags[category] = lexicon.is_regulated_one(category)
        out[i] = flag
    return out


def cell_text(value: Any) -> str:
    """A listing's cell as text, as `astype("string").fillna("")` reads it (None or NaN -> "")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def text_column(records: list[dict[str, Any]], column: str) -> list[str]:
    """`cell_text` of each record's value in `column` (most values are str already)."""
    values = [record.get(column) for record in records]
    return [value if type(value) is str else cell_text(value) for value in values]


_PLAIN_NUMBER_TYPES = frozenset({int, float, bool, type(None)})


def _numbers(records: list[dict[str, Any]], column: str) -> np.ndarray:
    """`_number` of each record's value in `column`, as float64. Above `SMALL_BATCH_ROWS`, plain Python
    numbers and None (-> NaN) convert in one numpy call; anything else, or an infinite value, goes
    through `_number`."""
    if len(records) > SMALL_BATCH_ROWS:
        values = [record.get(column) for record in records]
        if _PLAIN_NUMBER_TYPES.issuperset(map(type, values)):
            try:
                numbers = np.array(values, dtype=np.float64)
            except OverflowError:  # an int too large for a float: `_number` raises it
                pass
            else:
                if not np.isinf(numbers).any():
                    return numbers
    return np.array([_number(record, column) for record in records], dtype=np.float64)


def _number(record: dict[str, Any], column: str) -> float:
    value = record.get(column)
    if value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise DataValidationError([f"column {column!r}: {value!r} is not a number"]) from exc
    if math.isinf(number):
        raise DataValidationError([f"column {column!r}: {value!r} is infinite"])
    return number


def _all_microseconds(values: list[Any], column: str) -> list[int]:
    """`_microseconds` of each value; a timestamp string repeated in the batch is parsed once."""
    parsed: dict[str, int] = {}
    out = []
    for value in values:
        if type(value) is str:
            if value not in parsed:
                parsed[value] = _microseconds(value, column)
            out.append(parsed[value])
        else:
            out.append(_microseconds(value, column))
    return out


def _microseconds(value: Any, column: str) -> int:
    if type(value) is datetime:  # what the API hands over: integer arithmetic, same as pd.Timestamp's
        epoch = _EPOCH_UTC if value.tzinfo is not None else _EPOCH
        delta = value - epoch
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if value is None:
        raise DataValidationError([f"column {column!r}: a listing to score needs its creation time"])
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise DataValidationError([f"column {column!r}: {value!r} is not a timestamp"]) from exc
    if pd.isna(stamp):
        raise DataValidationError([f"column {column!r}: a listing to score needs its creation time"])
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return int(stamp.to_datetime64().astype("datetime64[us]").astype(np.int64))


def _brand_key(brand: str) -> str:
    """A brand as its price norm is keyed: trimmed, lower-cased."""
    return brand.strip().lower()


def _brand_keys(brands: pd.Series) -> pd.Series:
    """`_brand_key` of a column (a missing brand as "")."""
    return brands.fillna("").astype("str").str.strip().str.lower()


def _looked_up(values: pd.Series, table: dict[str, Any], missing: float) -> np.ndarray:
    """float64 `table[str(value)]` of each value (a missing value as ""; `missing` where the table has no
    entry): each distinct value is looked up once (a column of categories holds few)."""
    codes, distinct = pd.factorize(values.fillna("").astype("str"))
    found = np.asarray([table.get(value, missing) for value in distinct], dtype=np.float64)
    found[np.isnan(found)] = missing  # as `Series.map(table).fillna(missing)`
    return found[codes]
