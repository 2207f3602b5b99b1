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

Live history: `MerchantUpdates` holds the outcomes reviewed after the snapshot's cutoff (the latest review
time in it), and a `SnapshotLookup` given them counts, for a listing created at t, the snapshot plus the
updates reviewed strictly before t, for the merchant's counts, its last rejection and the global prior
alike. So for a listing created after the cutoff the features equal `merchant_history` over the
snapshot's outcomes plus the updates, exactly.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

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
    timeline: ReviewTimeline | None = None,
) -> pd.DataFrame:
    """Merchant features for each listing from the outcomes reviewed strictly before it was created.

    O((n + m) log(n + m)), no Python loop over rows: events are sorted by (merchant, review time) and
    each listing finds its place with one `np.searchsorted` on a combined integer key.

    `timeline`: every merchant's outcomes for the global prior (None: `outcomes`' own). Given the
    timeline of the whole history, `outcomes` need only hold the listings' own merchants' outcomes
    (one merchant-partition of the history on a cluster) and the features are the same numbers.
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

    if timeline is None:
        timeline = ReviewTimeline.of(event_time, event_label)
    global_reviews, global_rejects = timeline.before(query_time)
    matrix = _feature_matrix(reviews, rejects, last_reject, query_time, global_reviews, global_rejects, prior_strength)
    return _frame(matrix, listings.index)


def merchant_snapshot(outcomes: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """Per-merchant totals over ALL outcomes: reviews, rejects, last_reject_at (NaT if none) and
    last_review_at (the latest review time: its maximum is the snapshot's cutoff, `snapshot_cutoff_us`).

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
            "last_review_us": reviewed.to_numpy(),
        }
    )
    totals = frame.groupby("merchant", sort=True).agg(
        reviews=("reviews", "sum"),
        rejects=("rejects", "sum"),
        last_reject_us=("last_reject_us", "max"),
        last_review_us=("last_review_us", "max"),
    )
    for name in ("last_reject", "last_review"):
        last = totals.pop(f"{name}_us").to_numpy()
        totals[f"{name}_at"] = np.where(last == _NO_TIME, np.datetime64("NaT", "us"), last.astype("datetime64[us]"))
    totals.index.name = config.merchant
    return totals.astype({"reviews": np.int64, "rejects": np.int64})


def snapshot_cutoff_us(snapshot: pd.DataFrame) -> int:
    """The latest review time in a snapshot, in microseconds: outcomes reviewed after it are updates.

    A snapshot written before `last_review_at` existed gives its latest rejection time instead (an
    approval reviewed later than that, if also logged by the service, then counts twice); an empty one
    gives the earliest representable time, so every outcome is an update.
    """
    column = "last_review_at" if "last_review_at" in snapshot.columns else "last_reject_at"
    times = snapshot[column].to_numpy().astype("datetime64[us]")
    known = times[~np.isnat(times)]
    return int(known.max().view(np.int64)) if len(known) else int(_NO_TIME)


class MerchantUpdates:
    """Outcomes reviewed after a snapshot's cutoff, in review-time order per merchant and overall.

    `add` files one outcome (an outcome at or before the cutoff is already in the snapshot, one whose
    key was added before is a repeat: both are ignored); `counts` answers, for listings created at given
    times, what the updates add to the snapshot: reviews, rejects and the last rejection strictly before
    each listing's creation, per merchant and overall (for the global prior). Thread-safe: outcomes
    are added by verdicts and refreshes while scoring threads read.

    Cost: `counts` is one vectorised search over all updates plus a binary search per listing in its
    merchant's own; `add` appends (an outcome older than the latest shifts the later ones). Memory:
    about 35 bytes per outcome plus the keys kept for de-duplication, which `forget_keys_before` drops
    once no refresh can return them again.
    """

    def __init__(self, since_us: int) -> None:
        self.since_us = int(since_us)
        # how far the log feeding these updates has been read (a review time; the feeder advances it)
        self.synced_us = int(since_us)
        self._merchants: dict[str, _Events] = {}
        self._all = _Timeline()
        self._keys: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._all.size

    def add(self, key: str, merchant: str, reviewed_us: int, rejected: bool) -> bool:
        """File one outcome; False if it was ignored (at or before the cutoff, or a repeat of `key`)."""
        with self._lock:
            if reviewed_us <= self.since_us or key in self._keys:
                return False
            self._keys[key] = reviewed_us
            events = self._merchants.get(merchant)
            if events is None:
                events = self._merchants[merchant] = _Events()
            events.add(reviewed_us, rejected)
            self._all.add(reviewed_us, rejected)
            return True

    def forget_keys_before(self, reviewed_us: int) -> None:
        """Drop the de-duplication keys of outcomes reviewed before `reviewed_us` (their counts stay)."""
        with self._lock:
            self._keys = {k: t for k, t in self._keys.items() if t >= reviewed_us}

    def counts(self, merchants: Sequence[str], created_us: Sequence[int]) -> UpdateCounts:
        """What the updates reviewed strictly before each listing's creation add to the snapshot."""
        n = len(merchants)
        if not self._all.size:
            return UpdateCounts.zeros(n)
        created = np.asarray(created_us, dtype=np.int64)
        reviews, rejects, last = [0] * n, [0] * n, [_NO_TIME] * n
        with self._lock:
            global_reviews, global_rejects = self._all.before(created)
            get = self._merchants.get
            for i, (merchant, at) in enumerate(zip(merchants, created.tolist(), strict=True)):
                events = get(merchant)
                if events is not None:
                    reviews[i], rejects[i], last[i] = events.before(at)
        as_int = np.array
        return UpdateCounts(
            as_int(reviews, np.int64), as_int(rejects, np.int64), as_int(last, np.int64), global_reviews, global_rejects
        )


@dataclass(frozen=True)
class UpdateCounts:
    """Per listing: the updates' reviews, rejects and last rejection (µs, `_NO_TIME` if none) for its
    merchant, and their reviews and rejects overall, all strictly before the listing was created."""

    reviews: np.ndarray
    rejects: np.ndarray
    last_reject: np.ndarray
    global_reviews: np.ndarray
    global_rejects: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> UpdateCounts:
        z = np.zeros(n, dtype=np.int64)
        return cls(z, z, np.full(n, _NO_TIME), z, z)


class _Events:
    """One merchant's review times in order, rejects counted cumulatively: counts before t in O(log n)."""

    __slots__ = ("cum_rejects", "reject_times", "times")

    def __init__(self) -> None:
        self.times = array("q")
        self.cum_rejects = array("q", [0])  # cum_rejects[k]: rejects among the first k events
        self.reject_times = array("q")

    def add(self, reviewed_us: int, rejected: bool) -> None:
        i = bisect_right(self.times, reviewed_us)  # almost always the end: verdicts arrive in time order
        self.times.insert(i, reviewed_us)
        self.cum_rejects.insert(i + 1, self.cum_rejects[i] + int(rejected))
        if rejected:
            for j in range(i + 2, len(self.cum_rejects)):
                self.cum_rejects[j] += 1
            self.reject_times.insert(bisect_right(self.reject_times, reviewed_us), reviewed_us)

    def before(self, created_us: int) -> tuple[int, int, int]:
        """(events, rejects, last rejection or `_NO_TIME`) reviewed strictly before `created_us`."""
        k = bisect_left(self.times, created_us)
        j = bisect_left(self.reject_times, created_us)
        return k, self.cum_rejects[k], self.reject_times[j - 1] if j else _NO_TIME


class _Timeline:
    """Every merchant's review times in order, in growable numpy buffers, for vectorised counts."""

    def __init__(self) -> None:
        self._times = np.empty(1024, dtype=np.int64)
        self._cum_rejects = np.zeros(1025, dtype=np.int64)  # [k]: rejects among the first k events
        self.size = 0

    def add(self, reviewed_us: int, rejected: bool) -> None:
        n, r = self.size, int(rejected)
        if n == len(self._times):
            self._times = np.concatenate([self._times, np.empty(n, dtype=np.int64)])
            self._cum_rejects = np.concatenate([self._cum_rejects, np.zeros(n, dtype=np.int64)])
        i = (
            n
            if n == 0 or reviewed_us >= self._times[n - 1]
            else int(np.searchsorted(self._times[:n], reviewed_us, "right"))
        )
        self._times[i + 1 : n + 1] = self._times[i:n].copy()
        self._times[i] = reviewed_us
        self._cum_rejects[i + 2 : n + 2] = self._cum_rejects[i + 1 : n + 1] + r
        self._cum_rejects[i + 1] = self._cum_rejects[i] + r
        self.size = n + 1

    def before(self, created_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(events, rejects) reviewed strictly before each time in `created_us`."""
        k = np.searchsorted(self._times[: self.size], created_us, side="left").astype(np.int64)
        return k, self._cum_rejects[k]


class SnapshotLookup:
    """Applies a merchant snapshot, plus `updates` if given, to listings; `many` is the serving path."""

    def __init__(
        self, snapshot: pd.DataFrame, prior_strength: float = PRIOR_STRENGTH, updates: MerchantUpdates | None = None
    ):
        self.prior_strength = float(prior_strength)
        self.updates = updates
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
        merchants = listings[config.merchant].astype("str")
        rows = self.merchants.get_indexer(merchants)
        matrix = self._features(rows, merchants.tolist(), to_microseconds(listings[config.timestamp]))
        return _frame(matrix, listings.index)

    def many(self, merchants: list[str], created_us: list[int]) -> np.ndarray:
        """Features (n x 4, MERCHANT_FEATURES order) of a few listings: a dict lookup per merchant
        instead of pandas indexing, the same arithmetic as `frame`."""
        rows = np.array([self._row.get(m, -1) for m in merchants], dtype=np.int64)
        return self._features(rows, merchants, np.array(created_us, dtype=np.int64))

    def one(self, merchant: str, created_us: int) -> tuple[float, float, float, float]:
        """Features of one listing, in MERCHANT_FEATURES order."""
        values = self.many([merchant], [created_us])[0]
        return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))

    def _features(self, rows: np.ndarray, merchants: Sequence[str], created_us: np.ndarray) -> np.ndarray:
        """The snapshot's counts at `rows` (-1: unknown merchant) plus the updates before `created_us`."""
        n = len(rows)
        known = rows >= 0
        safe = np.maximum(rows, 0)
        if len(self.reviews) == 0:
            reviews = rejects = np.zeros(n, dtype=np.int64)
            last = np.full(n, _NO_TIME)
        else:
            reviews = np.where(known, self.reviews[safe], 0)
            rejects = np.where(known, self.rejects[safe], 0)
            last = np.where(known, self.last_reject[safe], _NO_TIME)
        global_reviews, global_rejects = np.full(n, self.total_reviews), np.full(n, self.total_rejects)
        if self.updates is not None:
            extra = self.updates.counts(merchants, created_us.tolist())
            reviews, rejects = reviews + extra.reviews, rejects + extra.rejects
            last = np.maximum(last, extra.last_reject)
            global_reviews, global_rejects = (
                global_reviews + extra.global_reviews,
                global_rejects + extra.global_rejects,
            )
        return _feature_matrix(reviews, rejects, last, created_us, global_reviews, global_rejects, self.prior_strength)


def merchant_from_snapshot(
    listings: pd.DataFrame,
    snapshot: pd.DataFrame,
    config: DataConfig,
    *,
    prior_strength: float = PRIOR_STRENGTH,
) -> pd.DataFrame:
    """Merchant features of new listings from a snapshot (see `SnapshotLookup`)."""
    return SnapshotLookup(snapshot, prior_strength).frame(listings, config)


@dataclass(frozen=True)
class ReviewTimeline:
    """Every outcome's review time, sorted, with the rejects counted cumulatively: the global reviews
    and rejects known before any time, for the prior of `merchant_history` (16 bytes per outcome)."""

    times: np.ndarray  # int64 microseconds, ascending
    cum_rejects: np.ndarray  # [k]: rejects among the first k outcomes (len(times) + 1 entries)

    @classmethod
    def of(cls, reviewed_us: np.ndarray, label: np.ndarray) -> ReviewTimeline:
        order = np.argsort(reviewed_us, kind="stable")
        return cls(reviewed_us[order], np.concatenate([[0], np.cumsum(label[order])]).astype(np.int64))

    @classmethod
    def from_outcomes(cls, outcomes: pd.DataFrame, config: DataConfig) -> ReviewTimeline:
        label = outcomes[config.label].to_numpy().astype(np.int64)
        return cls.of(to_microseconds(outcomes[review_time_column(config)]), label)

    @classmethod
    def merged(cls, parts: Sequence[ReviewTimeline]) -> ReviewTimeline:
        """The timeline of the union of the parts' outcomes."""
        times = np.concatenate([p.times for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        rejects = [np.diff(p.cum_rejects) for p in parts]
        label = np.concatenate(rejects) if rejects else np.zeros(0, dtype=np.int64)
        return cls.of(times, label)

    def before(self, created_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(outcomes, rejects) reviewed strictly before each time in `created_us`."""
        k = np.searchsorted(self.times, created_us, side="left")
        return k, self.cum_rejects[k]


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
