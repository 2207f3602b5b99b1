"""Point-in-time merchant history: what was known about a merchant when each listing was created.

A listing sees only outcomes whose review time is strictly before its created_at: never its own
outcome, never a later one. That includes the global reject rate used to smooth a merchant's rate, so
changing any outcome reviewed after a listing was created cannot change that listing's features.

Features (float64, NaN where undefined):
- merchant_prior_reviews: outcomes of this merchant reviewed before the listing was created;
- merchant_prior_rejects: how many of those were rejections;
- merchant_prior_reject_rate: (rejects + a * p0) / (reviews + a), with p0 the global reject rate
  known at that time, (all rejects + 1) / (all reviews + 2), and a = prior_strength;
- merchant_days_since_last_reject: days from the merchant's last rejection to the listing (NaN if none).

For listings scored after the history ends, `merchant_snapshot` keeps per-merchant totals of every
outcome and `SnapshotLookup` applies them (unknown merchant -> 0 reviews, the global prior rate). For a
listing created after the last review, snapshot features equal `merchant_history` features exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import DataConfig
from features.validate import review_time_column

MERCHANT_FEATURES: tuple[str, ...] = (
    "merchant_prior_reviews",
    "merchant_prior_rejects",
    "merchant_prior_reject_rate",
    "merchant_days_since_last_reject",
)
PRIOR_STRENGTH = 5.0
_US_PER_DAY = 86_400 * 1_000_000
_NO_TIME = np.iinfo(np.int64).min  # sentinel for "never rejected" in int64 microsecond arrays


def to_microseconds(values: pd.Series | np.ndarray) -> np.ndarray:
    """Timestamps -> int64 microseconds since the epoch (finer units are floored, which can only
    turn 'strictly before' into 'same instant', i.e. hide an outcome, never leak one)."""
    array = pd.to_datetime(pd.Series(values)).to_numpy().astype("datetime64[us]")
    return array.view(np.int64)


def merchant_history(
    listings: pd.DataFrame,
    outcomes: pd.DataFrame,
    config: DataConfig,
    *,
    prior_strength: float = PRIOR_STRENGTH,
) -> pd.DataFrame:
    """Merchant features for each listing from the outcomes reviewed strictly before it was created.

    O((n + m) log(n + m)), no Python loop over rows: events are sorted by (merchant, review time) and
    each listing finds its place with one `np.searchsorted` on a combined integer key.
    """
    event_time = to_microseconds(outcomes[review_time_column(config)])
    event_label = outcomes[config.label].to_numpy().astype(np.int64)
    query_time = to_microseconds(listings[config.timestamp])
    merchants = pd.concat([outcomes[config.merchant], listings[config.merchant]], ignore_index=True)
    codes = pd.factorize(merchants.astype("str"))[0].astype(np.int64)
    event_code, query_code = codes[: len(outcomes)], codes[len(outcomes) :]

    # Dense ranks of all times keep the order (ties stay ties) and make code * span + rank fit in int64.
    ranks = np.unique(np.concatenate([event_time, query_time]), return_inverse=True)[1].astype(np.int64)
    span = int(ranks.max(initial=0)) + 1
    event_key = event_code * span + ranks[: len(outcomes)]
    query_key = query_code * span + ranks[len(outcomes) :]
    merchant_start = query_code * span

    order = np.argsort(event_key, kind="stable")
    event_key, event_label, event_time = event_key[order], event_label[order], event_time[order]
    cum_rejects = np.concatenate([[0], np.cumsum(event_label)])
    before = np.searchsorted(event_key, query_key, side="left")
    first = np.searchsorted(event_key, merchant_start, side="left")
    reviews = before - first
    rejects = cum_rejects[before] - cum_rejects[first]

    is_reject = event_label == 1
    reject_key, reject_time = event_key[is_reject], event_time[is_reject]
    reject_before = np.searchsorted(reject_key, query_key, side="left")
    reject_first = np.searchsorted(reject_key, merchant_start, side="left")
    has_reject = reject_before > reject_first
    last_reject = np.where(
        has_reject, reject_time[np.maximum(reject_before - 1, 0)] if len(reject_time) else 0, _NO_TIME
    )

    global_reviews, global_rejects = _global_counts_before(event_time, event_label, query_time)
    matrix = _feature_matrix(reviews, rejects, last_reject, query_time, global_reviews, global_rejects, prior_strength)
    return _frame(matrix, listings.index)


def merchant_snapshot(outcomes: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """Per-merchant totals over ALL outcomes: reviews, rejects, last_reject_at (NaT if none).

    Indexed by merchant id (str), sorted; the global prior is the sum over merchants.
    """
    label = outcomes[config.label].to_numpy().astype(np.int64)
    reviewed = pd.Series(to_microseconds(outcomes[review_time_column(config)]))
    frame = pd.DataFrame(
        {
            "merchant": outcomes[config.merchant].astype("str").to_numpy(),
            "reviews": 1,
            "rejects": label,
            "last_reject_us": reviewed.where(label == 1, _NO_TIME).to_numpy(),
        }
    )
    totals = frame.groupby("merchant", sort=True).agg(
        reviews=("reviews", "sum"), rejects=("rejects", "sum"), last_reject_us=("last_reject_us", "max")
    )
    last = totals.pop("last_reject_us").to_numpy()
    totals["last_reject_at"] = np.where(last == _NO_TIME, np.datetime64("NaT", "us"), last.astype("datetime64[us]"))
    totals.index.name = config.merchant
    return totals.astype({"reviews": np.int64, "rejects": np.int64})


class SnapshotLookup:
    """Applies a merchant snapshot to listings; `one` is the allocation-light path for serving."""

    def __init__(self, snapshot: pd.DataFrame, prior_strength: float = PRIOR_STRENGTH):
        self.prior_strength = float(prior_strength)
        self.merchants = snapshot.index.astype("str")
        self.reviews = snapshot["reviews"].to_numpy(dtype=np.int64)
        self.rejects = snapshot["rejects"].to_numpy(dtype=np.int64)
        last = snapshot["last_reject_at"].to_numpy().astype("datetime64[us]")
        self.last_reject = np.where(np.isnat(last), _NO_TIME, last.view(np.int64))
        self.total_reviews = int(self.reviews.sum())
        self.total_rejects = int(self.rejects.sum())
        self._row = {m: i for i, m in enumerate(self.merchants)}

    def frame(self, listings: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
        """Merchant features for many listings (unknown merchant -> 0 reviews, prior rate)."""
        rows = self.merchants.get_indexer(listings[config.merchant].astype("str"))
        known = rows >= 0
        safe = np.maximum(rows, 0)
        n = len(listings)
        matrix = _feature_matrix(
            np.where(known, self.reviews[safe] if len(self.reviews) else 0, 0),
            np.where(known, self.rejects[safe] if len(self.rejects) else 0, 0),
            np.where(known, self.last_reject[safe] if len(self.last_reject) else 0, _NO_TIME),
            to_microseconds(listings[config.timestamp]),
            np.full(n, self.total_reviews),
            np.full(n, self.total_rejects),
            self.prior_strength,
        )
        return _frame(matrix, listings.index)

    def many(self, merchants: list[str], created_us: list[int]) -> np.ndarray:
        """Features (n x 4, MERCHANT_FEATURES order) of a few listings: a dict lookup per merchant
        instead of pandas indexing, the same arithmetic as `frame`."""
        rows = [self._row.get(m, -1) for m in merchants]
        known = np.array(rows) >= 0
        safe = np.maximum(np.array(rows, dtype=np.int64), 0)
        n = len(rows)
        if len(self.reviews) == 0:
            known[:] = False
            safe = np.zeros(n, dtype=np.int64)
            reviews = rejects = last = np.zeros(1, dtype=np.int64)
        else:
            reviews, rejects, last = self.reviews, self.rejects, self.last_reject
        return _feature_matrix(
            np.where(known, reviews[safe], 0),
            np.where(known, rejects[safe], 0),
            np.where(known, last[safe], _NO_TIME),
            np.array(created_us, dtype=np.int64),
            np.full(n, self.total_reviews),
            np.full(n, self.total_rejects),
            self.prior_strength,
        )

    def one(self, merchant: str, created_us: int) -> tuple[float, float, float, float]:
        """Features of one listing, in MERCHANT_FEATURES order."""
        values = self.many([merchant], [created_us])[0]
        return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


def merchant_from_snapshot(
    listings: pd.DataFrame,
    snapshot: pd.DataFrame,
    config: DataConfig,
    *,
    prior_strength: float = PRIOR_STRENGTH,
) -> pd.DataFrame:
    """Merchant features of new listings from a snapshot (see `SnapshotLookup`)."""
    return SnapshotLookup(snapshot, prior_strength).frame(listings, config)


def _global_counts_before(
    event_time: np.ndarray, event_label: np.ndarray, query_time: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(event_time, kind="stable")
    cum_rejects = np.concatenate([[0], np.cumsum(event_label[order])])
    before = np.searchsorted(event_time[order], query_time, side="left")
    return before, cum_rejects[before]


def _frame(matrix: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """`_feature_matrix` output as the MERCHANT_FEATURES frame of the listings at `index`."""
    return pd.DataFrame(matrix, columns=list(MERCHANT_FEATURES), index=index)


def _feature_matrix(
    reviews: np.ndarray,
    rejects: np.ndarray,
    last_reject_us: np.ndarray,
    created_us: np.ndarray,
    global_reviews: np.ndarray,
    global_rejects: np.ndarray,
    prior_strength: float,
) -> np.ndarray:
    reviews = reviews.astype(np.float64)
    rejects = rejects.astype(np.float64)
    prior = (global_rejects.astype(np.float64) + 1.0) / (global_reviews.astype(np.float64) + 2.0)
    rate = (rejects + prior_strength * prior) / (reviews + prior_strength)
    never = last_reject_us == _NO_TIME
    gap = (created_us - np.where(never, created_us, last_reject_us)).astype(np.float64) / _US_PER_DAY
    days = np.where(never, np.nan, np.maximum(gap, 0.0))
    return np.column_stack([reviews, rejects, rate, days])
