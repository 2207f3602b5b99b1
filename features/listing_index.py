"""Near-duplicate search over listings for re-posts: an LSH index of MinHash signatures, with the time
each listing became known, and the re-post scorer of its candidate pairs.

The band count and rows per band are datasketch's `MinHashLSH` choice (`minhash.lsh_bands`). The
re-post index bands lower (REJECTS_LSH_THRESHOLD) and mixes the exact product attributes into its band
keys (blocking: a candidate is already the same kind of product). A candidate is a re-post when it is
the same product (`same_product`: the exact attribute columns and a price within PRICE_RATIO) and its
score reaches REPOST_THRESHOLD: a logistic regression (`repost_score`) on the estimated Jaccard
similarity (share of equal signature values, unbiased for the Jaccard similarity of the shingle sets),
same merchant, a new account of another merchant, the price change and the days from the rejection to
the listing. Coefficients and threshold are fitted on validation seeds (bench/bench_identify.py);
features of columns a data config lacks are 0 on both sides of every pair.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from features.minhash import EMPTY_SIGNATURE, HashFamily, estimated_jaccard, lsh_bands

# Bands (datasketch's choice) for this Jaccard similarity, a missed candidate weighted above a needless
# one (every candidate is checked against REPOST_THRESHOLD): 11 bands of 5, a pair at 0.8 meets in 99%.
LSH_THRESHOLD = 0.65
# The re-post index reaches lower: a re-post edited every way keeps about half its shingles (Jaccard
# similarity 0.4-0.6), so 21 bands of 3 (a pair at 0.45 meets in 95%). Its band keys mix in the product
# attributes (`ListingIndex(blocked=True)`), so a bucket holds one product kind and stays small.
REJECTS_LSH_THRESHOLD = 0.4
# A candidate's re-post score: a logistic regression on pair features (`pair_features`: estimated Jaccard
# similarity, same merchant, new account of another merchant, |log price ratio|, both prices known, and
# how long after the rejection the query was listed: re-posters come back within days or weeks, while a
# lookalike of another seller is as likely months later),
# fitted on the candidates of validation seeds by bench/bench_identify.py. A candidate counts as a
# re-post from REPOST_THRESHOLD (the lowest score at which each of four validation seeds' precision
# reaches 0.97: a margin over the 0.95 target, set by the worst generated world, not the pool).
REPOST_FEATURES = (
    "similarity",
    "same_merchant",
    "new_account",
    "abs_log_price_ratio",
    "same_price",
    "similarity_same_merchant",
    "similarity_new_account",
    "log_days_since_reject",
    "similarity_log_days_since_reject",
)
REPOST_COEFFICIENTS = (9.598, 3.43, 1.323, -5.358, 4.862, 12.249, 12.01, -0.686, -1.97)
REPOST_INTERCEPT = -9.405
REPOST_THRESHOLD = 0.5788
MAX_BUCKET = 256  # candidates read per band and query (the newest of an oversized bucket)
QUERY_BLOCK = 100_000  # queries `ListingIndex.best` matches at a time (bounds the candidate pairs held)
PRICE_RATIO = (0.75, 1.35)  # a re-post's price is within this ratio of its original's
_HASHED_BOUNDS_MIN = 65_536  # query keys from which a segment looks keys up in a hash table
_US_PER_DAY = 86_400 * 1_000_000


@dataclass(frozen=True)
class Listings:
    """Listings as the index holds them: id, time each became known (us), MinHash signature, and the
    product attributes a re-post keeps: `attributes` (a hash of the exact-match columns, 0: unknown)
    and `price` (NaN: unknown); `merchants` (a hash of the merchant id, 0: unknown); `new_accounts`
    (the merchant joined less than NEW_ACCOUNT_DAYS before the listing)."""

    ids: np.ndarray
    times: np.ndarray
    signatures: np.ndarray
    attributes: np.ndarray
    prices: np.ndarray
    merchants: np.ndarray
    new_accounts: np.ndarray

    @classmethod
    def empty(cls, num_perm: int) -> Listings:
        return cls(
            np.zeros(0, object),
            np.zeros(0, np.int64),
            np.zeros((0, num_perm), np.uint32),
            np.zeros(0, np.uint64),
            np.zeros(0, np.float64),
            np.zeros(0, np.uint64),
            np.zeros(0, bool),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray | list[int] | slice) -> Listings:
        return Listings(*(np.asarray(getattr(self, f))[rows] for f in _LISTING_FIELDS))

    def concat(self, other: Listings) -> Listings:
        if not len(self) or not len(other):  # no copy of a large block for an empty one
            return other if not len(self) else self
        return Listings(*(np.concatenate([getattr(self, f), getattr(other, f)]) for f in _LISTING_FIELDS))


_LISTING_FIELDS = ("ids", "times", "signatures", "attributes", "prices", "merchants", "new_accounts")


def same_product(a: Listings, rows_a: np.ndarray, b: Listings, rows_b: np.ndarray) -> np.ndarray:
    """Whether pairs agree on the product attributes a re-post keeps: the exact-match columns (where
    both are known) and a price within PRICE_RATIO of each other (where both are known)."""
    attr_a, attr_b = a.attributes[rows_a], b.attributes[rows_b]
    same = (attr_a == attr_b) | (attr_a == 0) | (attr_b == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = a.prices[rows_a] / b.prices[rows_b]
    low, high = PRICE_RATIO
    return same & ((ratio >= low) & (ratio <= high) | np.isnan(ratio))


@dataclass(frozen=True)
class _Segment:
    """Indexed listings and their band keys, all bands in one sorted array (a key mixes in its band)."""

    listings: Listings
    keys: np.ndarray  # (n * bands,) uint64, sorted by (key, time)
    order: np.ndarray  # (n * bands,) the listing row of each sorted key

    @classmethod
    def build(cls, listings: Listings, bands: int, rows: int, blocked: bool = False) -> _Segment:
        by_time = np.argsort(listings.times, kind="stable")  # so a bucket lists its listings oldest first
        block = listings.attributes[by_time] if blocked else None
        keys = band_keys(listings.signatures[by_time], bands, rows, block).ravel()
        order = np.argsort(keys, kind="stable")
        return cls(listings, keys[order], by_time[order // bands])

    def __len__(self) -> int:
        return len(self.listings)

    def _bounds(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each query key's run of equal keys starts and ends in `keys` (empty where absent): a
        binary search for a few keys, a hash look-up of the distinct keys for many (same positions)."""
        if len(flat) < _HASHED_BOUNDS_MIN:
            return np.searchsorted(self.keys, flat, side="left"), np.searchsorted(self.keys, flat, side="right")
        distinct, starts, ends = self._runs
        at = distinct.get_indexer(flat.astype(np.uint64, copy=False))
        absent = at < 0
        lo, hi = starts[at], ends[at]
        lo[absent] = hi[absent] = 0
        return lo, hi

    @cached_property
    def _runs(self) -> tuple[pd.Index, np.ndarray, np.ndarray]:
        """(each distinct key, where its run starts in `keys`, where it ends)."""
        starts = np.flatnonzero(np.r_[True, self.keys[1:] != self.keys[:-1]]) if len(self.keys) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(self.keys)].astype(starts.dtype)
        return pd.Index(self.keys[starts]), starts, ends

    def candidates(self, query_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query row, indexed row) pairs sharing at least one band (at most MAX_BUCKET per band and
        query: the newest of a bucket)."""
        if not len(self):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        lo, hi = self._bounds(query_keys.ravel())
        lo = np.maximum(lo, hi - MAX_BUCKET)
        counts = hi - lo
        total = int(counts.sum())
        if not total:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        q = np.repeat(np.arange(query_keys.size) // query_keys.shape[1], counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        found = self.order[np.repeat(lo, counts) + offsets]
        pairs = _sorted_unique(q * len(self) + found)
        return np.divmod(pairs, len(self))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """`np.unique` of an integer array by a sort (numpy 2's hashed unique is many times slower here)."""
    ordered = np.sort(values)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def band_keys(signatures: np.ndarray, bands: int, rows: int, block: np.ndarray | None = None) -> np.ndarray:
    """(n, bands) uint64: each band's `rows` signature values mixed into one key, plus the band, plus
    (blocking) each row's `block` key times an odd constant: rows of other blocks never share a key."""
    values = signatures[:, : bands * rows].reshape(len(signatures), bands, rows).astype(np.uint64)
    mixed = (values * _band_multipliers(rows)).sum(axis=2, dtype=np.uint64)
    if block is not None:
        mixed = mixed + (block.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))[:, None]
    return mixed + np.arange(bands, dtype=np.uint64)


@lru_cache(maxsize=8)
def _band_multipliers(rows: int) -> np.ndarray:
    return np.random.default_rng(0).integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)


@dataclass
class Neighbours:
    """Query results: for query row `query[i]`, indexed listing `ids[i]` at `similarity[i]`, listed by
    the same merchant or not (`same_merchant[i]`; an unknown merchant on either side counts as the same),
    the query listed from a new account of another
    merchant or not (`new_account[i]`), the query's price over the indexed one's (`price_ratio[i]`,
    NaN: either unknown), and the days from the indexed listing becoming known (its rejection) to the
    query's time (`days_since[i]`, 0 when the query is not later)."""

    query: np.ndarray
    ids: np.ndarray
    similarity: np.ndarray
    same_merchant: np.ndarray
    new_account: np.ndarray
    price_ratio: np.ndarray
    days_since: np.ndarray

    @property
    def features(self) -> np.ndarray:
        """(pairs, len(REPOST_FEATURES)) float: the pair features a re-post score is computed from."""
        return pair_features(self.similarity, self.same_merchant, self.new_account, self.price_ratio, self.days_since)

    @property
    def score(self) -> np.ndarray:
        """What a re-post match is judged on: `repost_score` of the pair features."""
        return repost_score(self.features)


def pair_features(
    similarity: np.ndarray,
    same_merchant: np.ndarray,
    new_account: np.ndarray,
    price_ratio: np.ndarray,
    days_since: np.ndarray,
) -> np.ndarray:
    """`REPOST_FEATURES` of candidate pairs (an unknown price ratio: no change, not the same price)."""
    known = ~np.isnan(price_ratio)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(known, np.abs(np.log(np.where(known, price_ratio, 1.0))), 0.0)
    same_price = known & (change < 1e-9)
    columns = (
        similarity,
        same_merchant,
        new_account,
        change,
        same_price,
        similarity * same_merchant,
        similarity * new_account,
        np.log1p(days_since),
        similarity * np.log1p(days_since),
    )
    return np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1).reshape(-1, len(REPOST_FEATURES))


def repost_score(
    features: np.ndarray,
    coefficients: Sequence[float] = REPOST_COEFFICIENTS,
    intercept: float = REPOST_INTERCEPT,
) -> np.ndarray:
    """Logistic regression score in (0, 1) of `pair_features` rows: the fitted P(a candidate is a re-post)."""
    logit = features @ np.asarray(coefficients, dtype=np.float64) + intercept
    return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=np.float64)


class ListingIndex:
    """MinHash LSH over listings' normalised texts, with the time each listing became known.

    Thread-safe: `add` builds a new tail segment and swaps it in one assignment; queries read the
    segments they started with. The tail is merged into the base when it grows past `tail_limit`.
    """

    def __init__(
        self,
        family: HashFamily | None = None,
        lsh_threshold: float = LSH_THRESHOLD,
        tail_limit: int = 4096,
        blocked: bool = False,
    ) -> None:
        self.family = family or HashFamily()
        self.lsh_threshold = lsh_threshold
        self.blocked = blocked  # band keys mix in the product attributes
        self.bands, self.rows = lsh_bands(lsh_threshold, self.family.num_perm)
        self.tail_limit = tail_limit
        empty = self._segment(Listings.empty(self.family.num_perm))
        self._segments: tuple[_Segment, _Segment] = (empty, empty)
        self._known: set[str] = set()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return sum(len(s) for s in self._segments)

    def __contains__(self, listing_id: object) -> bool:
        return listing_id in self._known

    def _segment(self, listings: Listings) -> _Segment:
        return _Segment.build(listings, self.bands, self.rows, self.blocked)

    def add(self, listings: Listings) -> int:
        """Index listings; ids already indexed (or repeated) are skipped. Returns how many were added."""
        with self._lock:
            ids = listings.ids.tolist()
            keep = list({listing_id: i for i, listing_id in enumerate(ids) if listing_id not in self._known}.values())
            if keep:
                self._append(listings if len(keep) == len(listings) else listings.take(keep))
            return len(keep)

    def _append(self, listings: Listings) -> None:
        base, tail = self._segments
        grown = tail.listings.concat(listings)
        if len(grown) > self.tail_limit:
            self._segments = (self._segment(base.listings.concat(grown)), self._segment(grown.take([])))
        else:
            self._segments = (base, self._segment(grown))
        self._known.update(listings.ids.tolist())

    def query(
        self,
        listings: Listings,
        min_similarity: float = 0.0,
        before_us: np.ndarray | None = None,
        exclude_self: bool = True,
        product: bool = True,
    ) -> Neighbours:
        """Every indexed listing sharing a band with a query listing at `min_similarity` or more; with
        `before_us`, known strictly before its query's time; with `exclude_self`, not the query's own
        id; with `product`, of the `same_product`. A query's time is `before_us` (its creation, in
        history), else its listing's time (`record_listings`: now, for a listing being scored)."""
        keys = band_keys(listings.signatures, self.bands, self.rows, listings.attributes if self.blocked else None)
        has_words = (listings.signatures != EMPTY_SIGNATURE).any(axis=1)
        parts: list[tuple[np.ndarray, ...]] = []
        for segment in self._segments:
            q, c = segment.candidates(keys)
            if not len(q):
                continue
            indexed = segment.listings
            keep = has_words[q]  # a text without words matches nothing
            if before_us is not None:
                keep &= indexed.times[c] < before_us[q]
            if exclude_self:
                keep &= indexed.ids[c] != listings.ids[q]
            if product:
                keep &= same_product(listings, q, indexed, c)
            q, c = q[keep], c[keep]  # the cheap tests first: similarity only of the pairs left
            similarity = _chunked_similarity(listings.signatures, indexed.signatures, q, c)
            similar = similarity >= min_similarity
            q, c, similarity = q[similar], c[similar], similarity[similar]
            merchant, query_merchant = indexed.merchants[c], listings.merchants[q]
            # an unknown seller on either side (or data without a merchant column) is read as the same
            # seller, the most common re-post: the scorer then judges the text and the price
            same = (merchant == query_merchant) | (merchant == 0) | (query_merchant == 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = listings.prices[q] / indexed.prices[c]
            query_us = before_us[q] if before_us is not None else listings.times[q]
            days = np.maximum(query_us - indexed.times[c], 0) / _US_PER_DAY
            parts.append((q, indexed.ids[c], similarity, same, listings.new_accounts[q] & ~same, ratio, days))
        if not parts:
            nothing = np.zeros(0, bool)
            return Neighbours(
                np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0), nothing, nothing, np.zeros(0), np.zeros(0)
            )
        return Neighbours(*(np.concatenate(p) for p in zip(*parts, strict=True)))

    def best(
        self, listings: Listings, min_score: float, before_us: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query, the indexed listing of the same product with the highest `Neighbours.score`, if
        that is `min_score` or more: (ids, "" for none; its text similarity, 0.0 for none; its score).
        Queries go QUERY_BLOCK at a time: a block's candidate pairs grow with the index as well as
        with the queries, and only each query's best is kept."""
        n = len(listings)
        ids, similarity, score = np.full(n, "", dtype=object), np.zeros(n), np.zeros(n)
        for lo in range(0, n, QUERY_BLOCK):
            block = slice(lo, min(n, lo + QUERY_BLOCK))
            found = self.query(
                listings.take(block) if n > QUERY_BLOCK else listings,
                0.0,
                before_us[block] if before_us is not None else None,
            )
            scores = found.score
            keep = scores >= min_score
            q = found.query[keep]
            if len(q):
                order = np.lexsort((-scores[keep], q))
                first = order[np.r_[True, q[order][1:] != q[order][:-1]]]
                ids[lo + q[first]] = found.ids[keep][first]
                similarity[lo + q[first]] = found.similarity[keep][first]
                score[lo + q[first]] = scores[keep][first]
        return ids, similarity, score

    def nearest(self, listing: Listings, k: int) -> list[tuple[str, float]]:
        """The k indexed listings whose text is most similar to one listing (any product attributes):
        (id, similarity), best first."""
        found = self.query(listing, product=False)
        order = np.lexsort((found.ids.astype(str), -found.similarity))[:k]
        return [(str(found.ids[i]), float(found.similarity[i])) for i in order]

    def listing(self, listing_id: str) -> Listings | None:
        """An indexed listing by id (None: not indexed); a scan, for one-off look-ups."""
        if listing_id not in self._known:
            return None
        for segment in reversed(self._segments):
            rows = np.flatnonzero(segment.listings.ids == listing_id)
            if len(rows):
                return segment.listings.take(rows[-1:])
        return None

    def save(self, directory: Path, name: str) -> None:
        base, tail = self._segments
        listings = base.listings.concat(tail.listings)
        arrays = {f: getattr(listings, f) for f in _LISTING_FIELDS}
        np.savez(directory / f"{name}.npz", **{**arrays, "ids": listings.ids.astype(str)})

    @classmethod
    def load(
        cls, directory: Path, name: str, family: HashFamily, lsh_threshold: float, blocked: bool = False
    ) -> ListingIndex:
        index = cls(family, lsh_threshold, blocked=blocked)
        with np.load(directory / f"{name}.npz", allow_pickle=False) as data:
            listings = Listings(*(data[f] for f in _LISTING_FIELDS))
        listings = replace(listings, ids=listings.ids.astype(object))
        if listings.signatures.shape[1:] != (family.num_perm,):
            raise ValueError(f"{name}.npz: signatures of {listings.signatures.shape[1:]}, expected {family.num_perm}")
        index._segments = (index._segment(listings), index._segments[1])
        index._known = set(listings.ids.tolist())
        return index


def _chunked_similarity(
    queries: np.ndarray, indexed: np.ndarray, q: np.ndarray, c: np.ndarray, chunk: int = 500_000
) -> np.ndarray:
    out = np.empty(len(q))
    for lo in range(0, len(q), chunk):
        out[lo : lo + chunk] = estimated_jaccard(queries[q[lo : lo + chunk]], indexed[c[lo : lo + chunk]])
    return out
