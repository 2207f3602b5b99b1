"""Product identification: is a listing a re-post of a rejected listing, or a known prohibited product?

Two matchers over one normalisation (`features.minhash`):
- re-posts: `features.listing_index.ListingIndex`, MinHash LSH over listings' normalised title +
  description + brand, blocked by the product's attributes, each candidate scored on the pair;
- known products: `features.catalogue.Catalogue`, names and aliases on whole words, close misspellings
  read as the catalogue's words.

`ProductIdentifier` holds both, and an index of every reviewed listing with its verdict (similar past
cases), for the service and the bundle; `identify_history` is the point-in-time version for training
data: a row matches only listings rejected and reviewed strictly before it was created.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.catalogue import Catalogue
from features.config import DataConfig, match_key
from features.listing_index import REJECTS_LSH_THRESHOLD, REPOST_FEATURES, REPOST_THRESHOLD, ListingIndex, Listings
from features.minhash import COLUMNAR_MIN, HashFamily, matching_records, matching_texts

PRODUCT_MATCH = "product_match"  # the text column match rules read: the sources found, space-separated
MATCH_SOURCES = ("repost", "catalogue")
HISTORY_COLUMNS = (PRODUCT_MATCH, "repost_of", "repost_similarity", "catalogue_entry")
# A seller whose listing was rejected often comes back through a second account: another merchant that
# joined less than NEW_ACCOUNT_DAYS before the listing.
NEW_ACCOUNT_DAYS = 60.0
TENURE_COLUMN = "merchant_tenure_days"
PRICE_COLUMN = "price"
# numeric columns describing the product itself (not its seller or the moment): a re-post keeps them
PRODUCT_NUMERIC = ("image_count", "has_certificate")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- the identifier --------------------------------------------------------------------------------------


@dataclass
class Identification:
    """What product identification found for one listing."""

    repost_of: str = ""
    repost_similarity: float = 0.0
    catalogue_entry: str = ""
    catalogue_name: str = ""
    catalogue_reason: str = ""

    @property
    def product_match(self) -> str:
        sources = [s for s, hit in zip(MATCH_SOURCES, (self.repost_of, self.catalogue_entry), strict=True) if hit]
        return " ".join(sources)

    def reasons(self) -> list[dict[str, Any]]:
        """The decision's reasons for the matches: the matched listing or catalogue entry."""
        found: list[dict[str, Any]] = []
        if self.repost_of:
            found.append(
                {
                    "feature": "repost_match",
                    "matched_listing_id": self.repost_of,
                    "similarity": round(self.repost_similarity, 4),
                }
            )
        if self.catalogue_entry:
            found.append(
                {
                    "feature": "catalogue_match",
                    "catalogue_entry_id": self.catalogue_entry,
                    "catalogue_name": self.catalogue_name,
                    "violation_reason": self.catalogue_reason,
                }
            )
        return found


IDENTIFY_DIR = "identify"  # in a bundle: rejects.npz, catalogue.csv, identify.json


@dataclass(frozen=True)
class PastCase:
    """A reviewed past listing similar to a given one."""

    listing_id: str
    verdict: str  # "reject" | "approve"
    violation_reason: str
    similarity: float


def product_attributes(config: DataConfig) -> tuple[list[str], str | None]:
    """(exact-match attribute columns, price column) of a data config: its categorical columns and the
    numeric ones that describe the product itself (`PRODUCT_NUMERIC`), and `price` when numeric."""
    exact = [*config.categorical, *(c for c in PRODUCT_NUMERIC if c in config.numeric)]
    return exact, PRICE_COLUMN if PRICE_COLUMN in config.numeric else None


def _attribute_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, int, float, np.number)):
        return f"{float(value):g}"
    return str(value).strip().lower()


def _attribute_keys(columns: Sequence[Sequence[Any]], n: int) -> np.ndarray:
    """uint64 hash (BLAKE2b) of each row's attribute values; 0 where every value is missing (unknown).
    Each distinct value and each distinct row is read and hashed once."""
    if not columns:
        return np.zeros(n, np.uint64)
    texts = []
    for values in columns:
        if n < COLUMNAR_MIN:
            texts.append([_attribute_text(v) for v in values])
            continue
        codes, uniques = pd.factorize(pd.Series(list(values), dtype=object), use_na_sentinel=False)
        texts.append(np.asarray([_attribute_text(u) for u in uniques], dtype=object)[codes].tolist())
    rows = ["\x1f".join(parts) for parts in zip(*texts, strict=True)]
    codes, uniques = pd.factorize(pd.Series(rows, dtype=object)) if n >= COLUMNAR_MIN else (None, None)
    distinct = rows if uniques is None else uniques.tolist()
    keys = np.fromiter((_row_hash(r) for r in distinct), dtype=np.uint64, count=len(distinct))
    return keys if codes is None else keys[codes]


def _row_hash(row: str) -> int:
    if not row.strip("\x1f"):
        return 0
    return int.from_bytes(hashlib.blake2b(row.encode("utf-8"), digest_size=8).digest(), "little") | 1


def _prices(values: Sequence[Any]) -> np.ndarray:
    """Prices as floats; missing, unreadable or not positive: NaN (unknown)."""
    numbers = _floats(values)
    with np.errstate(invalid="ignore"):
        return np.where(numbers > 0, numbers, np.nan)


def _new_accounts(values: Sequence[Any]) -> np.ndarray:
    """Whether each merchant tenure (days) is under NEW_ACCOUNT_DAYS (unknown: no)."""
    with np.errstate(invalid="ignore"):
        return _floats(values) < NEW_ACCOUNT_DAYS


def _floats(values: Sequence[Any]) -> np.ndarray:
    if len(values) < COLUMNAR_MIN:
        return np.array([_number(v) for v in values], dtype=np.float64)
    return pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=np.float64)


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class ProductIdentifier:
    """Re-post matching against rejected listings, catalogue matching, and similar past cases (an index
    over every reviewed listing with its verdict), for the listings' text and product attribute columns.

    `synced_until` is how far the service has added verdicts from its decision log (None: not yet).
    """

    def __init__(
        self,
        text_columns: Sequence[str],
        attribute_columns: Sequence[str] = (),
        price_column: str | None = None,
        merchant_column: str | None = None,
        tenure_column: str | None = None,
        rejects: ListingIndex | None = None,
        catalogue: Catalogue | None = None,
        threshold: float = REPOST_THRESHOLD,
        reviewed: ListingIndex | None = None,
        outcomes: dict[str, tuple[str, str]] | None = None,
        time_column: str | None = None,
    ) -> None:
        self.text_columns = list(text_columns)
        self.time_column = time_column  # a new listing's creation time, for its days since a rejection
        self.attribute_columns = list(attribute_columns)
        self.price_column = price_column
        self.merchant_column = merchant_column
        self.tenure_column = tenure_column
        self.rejects = (
            rejects if rejects is not None else ListingIndex(lsh_threshold=REJECTS_LSH_THRESHOLD, blocked=True)
        )
        self.catalogue = catalogue
        self.threshold = threshold
        self.reviewed = reviewed if reviewed is not None else ListingIndex(self.rejects.family)
        self.outcomes = outcomes if outcomes is not None else {}  # listing id -> (verdict, violation reason)
        self.synced_until: Any = None

    @property
    def family(self) -> HashFamily:
        return self.rejects.family

    def frame_listings(self, frame: pd.DataFrame, ids: np.ndarray, times_us: np.ndarray) -> tuple[Listings, list[str]]:
        """(the rows as the index holds them, their normalised texts)."""
        texts, titles = matching_texts(frame, self.text_columns)
        attributes = _attribute_keys([frame[c].tolist() for c in self.attribute_columns if c in frame], len(frame))
        price = self.price_column
        prices = _prices(frame[price].tolist()) if price and price in frame else np.full(len(frame), np.nan)
        merchant = self.merchant_column
        merchants = _attribute_keys([frame[merchant].tolist()] if merchant and merchant in frame else [], len(frame))
        tenure = self.tenure_column
        new = _new_accounts(frame[tenure].tolist()) if tenure and tenure in frame else np.zeros(len(frame), bool)
        signatures = self.family.signatures(texts, titles)
        ids, times = np.asarray(ids, dtype=object), np.asarray(times_us, np.int64)
        return Listings(ids, times, signatures, attributes, prices, merchants, new), texts

    def record_listings(
        self, records: Sequence[dict[str, Any]], id_column: str, times_us: Sequence[int] | None = None
    ) -> tuple[Listings, list[str]]:
        """`frame_listings` for listing dicts; unless given, each one's time is its creation time
        (`time_column`; now for a listing without one). Without a time column (data ordered by row) the
        index holds row positions, not times: listings get time 0, so the days since a rejection read
        0, as they do between neighbouring rows in training."""
        n = len(records)
        texts, titles = matching_records(records, self.text_columns)
        attributes = _attribute_keys([[r.get(c) for r in records] for c in self.attribute_columns], n)
        price = self.price_column
        prices = _prices([r.get(price) for r in records]) if price else np.full(n, np.nan)
        merchant = self.merchant_column
        merchants = _attribute_keys([[r.get(merchant) for r in records]] if merchant else [], n)
        tenure = self.tenure_column
        new = _new_accounts([r.get(tenure) for r in records]) if tenure else np.zeros(n, bool)
        ids = np.asarray([str(r.get(id_column, "")) for r in records], dtype=object)
        if times_us is None:
            column, now = self.time_column, _now_us()
            times_us = [_record_time_us(r.get(column), now) for r in records] if column else [0] * n
        times = np.asarray(times_us, dtype=np.int64)
        signatures = self.family.signatures(texts, titles)
        return Listings(ids, times, signatures, attributes, prices, merchants, new), texts

    def add_verdicts(
        self,
        records: Sequence[dict[str, Any]],
        id_column: str,
        verdicts: Sequence[str],
        reasons: Sequence[str],
        times_us: Sequence[int],
    ) -> int:
        """Add reviewed listings: every one to the past cases, the rejected ones to the re-post index.
        Returns how many rejects were new."""
        listings, _ = self.record_listings(records, id_column, times_us)
        for listing_id, verdict, reason in zip(listings.ids.tolist(), verdicts, reasons, strict=True):
            self.outcomes[listing_id] = (verdict, reason)
        self.reviewed.add(listings)
        return self.rejects.add(listings.take([i for i, v in enumerate(verdicts) if v == "reject"]))

    def similar(self, listing: Listings, k: int) -> list[PastCase]:
        """The k reviewed listings whose text is most similar to one listing (LSH candidates, best
        estimated Jaccard first), other than itself."""
        cases = []
        for listing_id, similarity in self.reviewed.nearest(listing, k):
            verdict, reason = self.outcomes.get(listing_id, ("", ""))
            cases.append(PastCase(listing_id, verdict, reason, round(similarity, 4)))
        return cases

    def identify_records(self, records: Sequence[dict[str, Any]], id_column: str) -> list[Identification]:
        """Identify listing dicts against everything indexed so far."""
        listings, texts = self.record_listings(records, id_column)
        repost_of, similarity, _ = self.rejects.best(listings, self.threshold)
        entries = self.catalogue.match(texts) if self.catalogue is not None else np.full(len(records), -1)
        rows = zip(repost_of, similarity.tolist(), entries.tolist(), strict=True)
        return [self._identification(r, s, e) for r, s, e in rows]

    def product_matches(self, frame: pd.DataFrame, id_column: str) -> np.ndarray:
        """`Identification.product_match` of every row of a validated frame of new listings: what
        `identify_records` finds, column by column instead of a dict per listing (offline scoring)."""
        n = len(frame)
        ids = frame[id_column].astype(str).to_numpy(dtype=object) if id_column in frame else np.full(n, "", object)
        column = self.time_column  # as `record_listings` places listings in time
        if column is None:
            times = np.zeros(n, np.int64)
        else:
            times = times_us(frame, column) if column in frame else np.full(n, _now_us(), np.int64)
        listings, texts = self.frame_listings(frame, ids, times)
        repost_of, _, _ = self.rejects.best(listings, self.threshold)
        entries = self.catalogue.match(texts) if self.catalogue is not None else np.full(n, -1)
        repost, catalogue = MATCH_SOURCES
        both = np.array(["", catalogue, repost, f"{repost} {catalogue}"], dtype=object)
        return both[(repost_of != "").astype(np.int64) * 2 + (entries >= 0)]

    def _identification(self, repost_of: str, similarity: float, entry: int) -> Identification:
        found = Identification(repost_of=repost_of, repost_similarity=similarity if repost_of else 0.0)
        if entry >= 0 and self.catalogue is not None:
            row = self.catalogue.entries.iloc[entry]
            found.catalogue_entry, found.catalogue_name = str(row["entry_id"]), str(row["name"])
            found.catalogue_reason = str(row["reason"])
        return found

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.rejects.save(directory, "rejects")
        self.reviewed.save(directory, "reviewed")
        ids = list(self.outcomes)
        pd.DataFrame(
            {
                "listing_id": ids,
                "verdict": [self.outcomes[i][0] for i in ids],
                "violation_reason": [self.outcomes[i][1] for i in ids],
            }
        ).to_parquet(directory / "outcomes.parquet", index=False)
        if self.catalogue is not None:
            self.catalogue.to_csv(directory / "catalogue.csv")
        meta = {
            "text_columns": self.text_columns,
            "attribute_columns": self.attribute_columns,
            "price_column": self.price_column,
            "merchant_column": self.merchant_column,
            "tenure_column": self.tenure_column,
            "time_column": self.time_column,
            "threshold": self.threshold,
            "repost_features": list(REPOST_FEATURES),
            "lsh_threshold": self.reviewed.lsh_threshold,
            "rejects_lsh_threshold": self.rejects.lsh_threshold,
            "rejects_blocked": self.rejects.blocked,
            "num_perm": self.family.num_perm,
            "seed": self.family.seed,
            "hash_family": "datasketch affine32 (sha1_hash32)",
        }
        (directory / "identify.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path, *, past_cases: bool = True) -> ProductIdentifier:
        """The saved identifier; `past_cases=False` leaves out the index of every reviewed listing and
        their outcomes (what `similar` reads, not matching): an empty one, for offline scoring."""
        meta = json.loads((directory / "identify.json").read_text())
        family = HashFamily(int(meta["num_perm"]), int(meta["seed"]))
        rejects = ListingIndex.load(
            directory,
            "rejects",
            family,
            float(meta.get("rejects_lsh_threshold", meta["lsh_threshold"])),
            bool(meta.get("rejects_blocked", False)),
        )
        catalogue_file = directory / "catalogue.csv"
        catalogue = Catalogue.read_csv(catalogue_file) if catalogue_file.is_file() else None
        if not past_cases:
            reviewed, outcomes = ListingIndex(family, float(meta["lsh_threshold"])), {}
        else:
            reviewed = ListingIndex.load(directory, "reviewed", family, float(meta["lsh_threshold"]))
            table = pd.read_parquet(directory / "outcomes.parquet")
            outcomes = dict(
                zip(table["listing_id"], zip(table["verdict"], table["violation_reason"], strict=True), strict=True)
            )
        return cls(
            meta["text_columns"],
            meta["attribute_columns"],
            meta["price_column"],
            meta["merchant_column"],
            meta["tenure_column"],
            rejects,
            catalogue,
            # a threshold saved for another scorer's features does not fit this one's scores
            float(meta["threshold"]) if meta.get("repost_features") == list(REPOST_FEATURES) else REPOST_THRESHOLD,
            reviewed,
            outcomes,
            meta.get("time_column"),
        )


def _now_us() -> int:
    return time.time_ns() // 1_000


def _record_time_us(value: Any, now: int) -> int:
    """A listing dict's creation time in microseconds (naive: UTC, as `times_us` reads a column); `now`
    when it is missing or not a time."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return now
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def rejected_rows(frame: pd.DataFrame, config: DataConfig) -> pd.Series:
    """Boolean mask of rows labelled rejected (validated label 1, or a configured reject value, matched as
    validation matches label values: `match_key`)."""
    label = frame[config.label]
    if pd.api.types.is_numeric_dtype(label) or pd.api.types.is_bool_dtype(label):
        return label.astype("float64").eq(1.0)
    reject = {match_key(value) for value in config.label_reject}
    return label.map(lambda value: pd.notna(value) and match_key(value) in reject).astype(bool)


def times_us(frame: pd.DataFrame, column: str | None) -> np.ndarray:
    """A timestamp column as int64 microseconds; without one, the row position (row order is time order)."""
    if column is None or column not in frame:
        return np.arange(len(frame), dtype=np.int64)
    values = pd.to_datetime(frame[column], utc=True).dt.tz_localize(None)
    return values.to_numpy().astype("datetime64[us]").astype(np.int64)


def _identifier_for(config: DataConfig, frame: pd.DataFrame, catalogue: pd.DataFrame | None) -> ProductIdentifier:
    exact, price = product_attributes(config)
    entries = Catalogue(catalogue) if catalogue is not None and len(catalogue) else None
    columns = [c for c in config.text if c in frame]
    merchant = config.merchant if config.merchant in frame else None
    tenure = TENURE_COLUMN if TENURE_COLUMN in config.numeric and TENURE_COLUMN in frame else None
    created = config.timestamp if config.timestamp and config.timestamp in frame else None
    return ProductIdentifier(
        columns, [c for c in exact if c in frame], price, merchant, tenure, catalogue=entries, time_column=created
    )


def build_identifier(
    frame: pd.DataFrame, config: DataConfig, catalogue: pd.DataFrame | None, threshold: float = REPOST_THRESHOLD
) -> ProductIdentifier | None:
    """The identifier a bundle ships: every rejected listing of `frame` indexed for re-posts, every
    listing with its verdict for similar cases, and the catalogue. None for data without text columns."""
    if not any(c in frame for c in config.text):
        return None
    identifier = _identifier_for(config, frame, catalogue)
    identifier.threshold = threshold
    ids = frame[config.id].astype(str).to_numpy(dtype=object)
    listings, _ = identifier.frame_listings(frame, ids, _review_times(frame, config))
    rejected = rejected_rows(frame, config).to_numpy()
    identifier.rejects.add(listings.take(np.flatnonzero(rejected)))
    identifier.reviewed.add(listings)
    reasons = (
        frame[config.violation_reason].astype("string").fillna("").to_numpy(dtype=object)
        if config.violation_reason and config.violation_reason in frame
        else np.full(len(frame), "", dtype=object)
    )
    verdicts = np.where(rejected, "reject", "approve").tolist()
    reasons = np.where(rejected, reasons, "").tolist()
    identifier.outcomes = dict(zip(ids.tolist(), zip(verdicts, reasons, strict=True), strict=True))
    return identifier


def _review_times(frame: pd.DataFrame, config: DataConfig) -> np.ndarray:
    from features.validate import review_time_column

    column = review_time_column(config)
    if column in frame:
        return times_us(frame, column)
    created = times_us(frame, config.timestamp if config.timestamp else None)
    if config.timestamp and config.timestamp in frame:
        return created + int(config.review_lag_days * 86_400 * 1_000_000)
    return created


def identify_history(
    frame: pd.DataFrame, config: DataConfig, catalogue: pd.DataFrame | None, *, threshold: float = REPOST_THRESHOLD
) -> pd.DataFrame:
    """Point-in-time product identification of labelled rows: each row is matched only against rows
    rejected and reviewed strictly before it was created (never itself), at `threshold` or more; the
    catalogue is timeless. Columns `HISTORY_COLUMNS`, same index as `frame`; "" / 0.0 where nothing
    matched."""
    out = pd.DataFrame(
        {PRODUCT_MATCH: "", "repost_of": "", "repost_similarity": 0.0, "catalogue_entry": ""}, index=frame.index
    )
    if not any(c in frame for c in config.text) or frame.empty:
        return out
    identifier = _identifier_for(config, frame, catalogue)
    ids = frame[config.id].astype(str).to_numpy(dtype=object)
    listings, texts = identifier.frame_listings(frame, ids, _review_times(frame, config))
    identifier.rejects.add(listings.take(np.flatnonzero(rejected_rows(frame, config).to_numpy())))
    repost_of, similarity, _ = identifier.rejects.best(listings, threshold, before_us=times_us(frame, config.timestamp))
    out["repost_of"] = repost_of
    out["repost_similarity"] = similarity
    if identifier.catalogue is not None:
        entries = identifier.catalogue.match(texts)
        names = identifier.catalogue.entries["entry_id"].to_numpy(dtype=object)
        out["catalogue_entry"] = np.where(entries >= 0, names[np.maximum(entries, 0)], "")
    repost = np.where(out["repost_of"].to_numpy(dtype=object) != "", "repost", "")
    found = np.where(out["catalogue_entry"].to_numpy(dtype=object) != "", "catalogue", "")
    out[PRODUCT_MATCH] = [f"{a} {b}".strip() for a, b in zip(repost.tolist(), found.tolist(), strict=True)]
    return out


def choose_threshold(similarity: np.ndarray, is_repost: np.ndarray, precision: float = 0.95) -> float:
    """The lowest similarity threshold whose matches are re-posts at `precision` or more on validation
    rows (each row's best candidate similarity, 0 for none, and whether it truly re-posts a reject).
    The threshold is a one-parameter choice on held-out seeds; the test seeds then measure it."""
    scored = similarity > 0
    values, right = similarity[scored], np.asarray(is_repost, dtype=np.float64)[scored]
    if not len(values):
        return 1.0
    # every distinct value t, highest first, with the precision of the rows at t or more
    order = np.argsort(-values, kind="stable")
    values, right = values[order], right[order]
    last = np.r_[values[1:] != values[:-1], True]  # each value's last row: its hits are rows up to it
    hits_precision = (np.cumsum(right) / np.arange(1, len(values) + 1))[last]
    reaching = np.flatnonzero(hits_precision >= precision)
    return float(values[last][reaching[-1]]) if len(reaching) else 1.0
