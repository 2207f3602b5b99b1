"""Product identification: is a listing a re-post of a rejected listing, or a known prohibited product?

Two matchers, one normalisation:
- `normalize_texts` lowercases, undoes common obfuscation ("R0lex" -> "rolex", "sw1tchblade" ->
  "switchblade", "c.u.r.e.s" -> "cures") and keeps only words separated by single spaces.
- `ListingIndex`: near-duplicate search over listings' normalised title + description + brand with
  MinHash LSH (Broder 1997; banding as in Leskovec, Rajaraman & Ullman, Mining of Massive Datasets ch. 3).
  Shingles are the words of the text plus the title's words once more (`shingles`). Signatures use
  datasketch's MinHash hash family (SHA-1 32-bit token hash, MurmurHash3 finalizer, affine32
  permutations with the library's seeded parameters) computed for a whole column at once with numpy;
  a test holds them equal to `datasketch.MinHash`. The band count and rows per band are datasketch's
  `MinHashLSH` choice. The re-post index bands lower (REJECTS_LSH_THRESHOLD) and mixes the exact
  product attributes into its band keys (blocking: a candidate is already the same kind of product).
  A candidate is a re-post when it is the same product (`same_product`: the exact attribute columns
  and a price within PRICE_RATIO) and its score reaches REPOST_THRESHOLD: a logistic regression
  (`repost_score`) on the estimated Jaccard similarity (share of equal signature values, unbiased for
  the Jaccard similarity of the shingle sets), same merchant, a new account of another merchant, the
  price change and the days from the rejection to the listing. Coefficients and threshold are fitted
  on validation seeds (bench/bench_identify.py); features of columns a data config lacks are 0 on both
  sides of every pair.
- `Catalogue`: known prohibited or restricted products by name and aliases. A phrase matches on whole
  words only, after each listing word that is a close misspelling of a catalogue word (rapidfuzz ratio
  >= `FUZZY_RATIO`, words of `FUZZY_MIN_LENGTH`+ letters) is read as that word. Every word of an alias
  must be there, in order: "ivory color" shares one word with "ivory carving" and matches nothing.

`ProductIdentifier` holds both, and an index of every reviewed listing with its verdict (similar past
cases), for the service and the bundle; `identify_history` is the point-in-time version for training
data: a row matches only listings rejected and reviewed strictly before it was created.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import DataConfig

PRODUCT_MATCH = "product_match"  # the text column match rules read: the sources found, space-separated
MATCH_SOURCES = ("repost", "catalogue")
HISTORY_COLUMNS = (PRODUCT_MATCH, "repost_of", "repost_similarity", "catalogue_entry")
CATALOGUE_COLUMNS = ("entry_id", "name", "aliases", "reason", "action")

NUM_PERM = 64
MINHASH_SEED = 1  # datasketch's default seed
# Bands (datasketch's choice) for this Jaccard similarity, a missed candidate weighted above a needless
# one (every candidate is checked against REPOST_THRESHOLD): 11 bands of 5, a pair at 0.8 meets in 99%.
LSH_THRESHOLD = 0.65
LSH_WEIGHTS = (0.3, 0.7)
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
# A seller whose listing was rejected often comes back through a second account: another merchant that
# joined less than NEW_ACCOUNT_DAYS before the listing.
NEW_ACCOUNT_DAYS = 60.0
TENURE_COLUMN = "merchant_tenure_days"
PRICE_COLUMN = "price"
PRICE_RATIO = (0.75, 1.35)  # a re-post's price is within this ratio of its original's
# numeric columns describing the product itself (not its seller or the moment): a re-post keeps them
PRODUCT_NUMERIC = ("image_count", "has_certificate")
FUZZY_RATIO = 88.0
FUZZY_MIN_LENGTH = 5
_US_PER_DAY = 86_400 * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EMPTY = np.iinfo(np.uint32).max  # every value of the signature of a text without words
_PADDED_WIDTH = 128  # shingles per text gathered at once; longer texts fold in their rest afterwards
_CACHED_PERMUTED = 50_000  # shingles whose permuted values are kept for one-listing calls
_CACHED_PERMUTED_MAX_BATCH = 512
_SIGNATURE_BLOCK = 100_000
_FEW_TEXTS = 8  # texts signed at a time
_GATHER_BUDGET = 32_000_000  # values per gathered block (128 MB of uint32)

_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "!": "i", "$": "s"}
_LEET_TABLE = str.maketrans(_LEET)
# The same rules in Python's `re` (a few texts) and in RE2 over a column (pyarrow), held equal by a test.
_DOTS_IN_WORD = re.compile(r"(?<=\w)[.\-_*](?=\w)")
_DOTS_IN_WORD_RE2 = r"([\p{L}\p{N}_])[.\-_*]([\p{L}\p{N}_])"  # applied twice: matches cannot overlap
_TRAILING_SYMBOLS = re.compile(r"[@!$]+(?!\w)")
_TRAILING_SYMBOLS_RE2 = r"[@!$]+([^\p{L}\p{N}_]|$)"
_NOT_WORD = re.compile(r"[^\w]+")
_NOT_WORD_RE2 = r"[^\p{L}\p{N}_]+"
TITLE_TAG = "title:"  # shingles of the title's words carry it (normalised text has no ":")
_HASHED_BOUNDS_MIN = 65_536  # query keys from which a segment looks keys up in a hash table
COLUMNAR_MIN = 64  # from this many texts, normalisation runs in RE2 over the column
_NORMALIZE_CHUNK = 200_000


def normalize_texts(texts: Sequence[str]) -> list[str]:
    """Matching form of each text: lowercase, obfuscation undone, words separated by single spaces.

    A dot, hyphen, underscore or star between two word characters goes ("c.u.r.e.s" -> "cures"); a run
    of "@", "!" or "$" that ends a word is punctuation ("cancer!" -> "cancer"); every other digit or
    symbol that can stand for a letter is read as that letter ("r0lex" -> "rolex", "@pple" -> "apple").
    Numbers are read as letters too ("40" -> "ao"): harmless, as both sides of a comparison are read
    alike. From COLUMNAR_MIN texts the same rules run in RE2 over the whole column, once per distinct text.
    """
    if len(texts) < COLUMNAR_MIN:
        return [_normalize_one(text) for text in texts]
    codes, distinct = pd.factorize(pd.Series(texts, dtype=object), use_na_sentinel=False)
    out: list[str] = []
    for start in range(0, len(distinct), _NORMALIZE_CHUNK):
        chunk = [
            t if t.isascii() else unicodedata.normalize("NFKC", t) for t in distinct[start : start + _NORMALIZE_CHUNK]
        ]
        out += _normalize_column(pa.array(chunk, type=pa.large_string()))
    return np.asarray(out, dtype=object)[codes].tolist() if len(out) < len(texts) else out


def _normalize_one(text: str) -> str:
    text = text.lower() if text.isascii() else unicodedata.normalize("NFKC", text).lower()
    text = _DOTS_IN_WORD.sub("", text)
    text = _TRAILING_SYMBOLS.sub(" ", text).translate(_LEET_TABLE)
    return _NOT_WORD.sub(" ", text).strip()


def _normalize_column(texts: pa.Array) -> list[str]:
    texts = pc.utf8_lower(texts)  # NFKC already applied (pyarrow's utf8_normalize leaves marks decomposed)
    for _ in range(2):
        texts = pc.replace_substring_regex(texts, _DOTS_IN_WORD_RE2, r"\1\2")
    texts = pc.replace_substring_regex(texts, _TRAILING_SYMBOLS_RE2, r" \1")
    for symbol, letter in _LEET.items():
        texts = pc.replace_substring(texts, symbol, letter)
    texts = pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, _NOT_WORD_RE2, " "))
    return texts.to_pylist()


def listing_texts(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Each row's text columns joined (title, description, brand...), "" where missing."""
    present = [c for c in columns if c in frame]
    if not present:
        return [""] * len(frame)
    joined = frame[present[0]].astype("string").fillna("")
    for column in present[1:]:
        joined = joined + " " + frame[column].astype("string").fillna("")
    return joined.tolist()


def record_texts(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """`listing_texts` for listing dicts."""
    return [" ".join(v if isinstance(v, str) else "" for v in (r.get(c) for c in columns)) for r in records]


def matching_texts(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """(normalised text of all columns, normalised first column: the title) of each row."""
    titles = normalize_texts(listing_texts(frame, columns[:1]))
    return _with_rest(titles, normalize_texts(listing_texts(frame, columns[1:]))), titles


def matching_records(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """`matching_texts` for listing dicts."""
    titles = normalize_texts(record_texts(records, columns[:1]))
    return _with_rest(titles, normalize_texts(record_texts(records, columns[1:]))), titles


def _with_rest(titles: list[str], rest: list[str]) -> list[str]:
    return [f"{t} {r}" if t and r else t or r for t, r in zip(titles, rest, strict=True)]


# --- MinHash signatures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HashFamily:
    """datasketch's affine32 MinHash: token -> sha1_hash32 -> fmix32 -> a_k * h + b_k (mod 2^32)."""

    num_perm: int = NUM_PERM
    seed: int = MINHASH_SEED
    a: np.ndarray = field(init=False, repr=False, compare=False)
    b: np.ndarray = field(init=False, repr=False, compare=False)
    _cache: dict[str, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from datasketch import MinHash

        a, b = MinHash(num_perm=self.num_perm, seed=self.seed, scheme="affine32").permutations
        object.__setattr__(self, "a", np.asarray(a, dtype=np.uint32))
        object.__setattr__(self, "b", np.asarray(b, dtype=np.uint32))
        object.__setattr__(self, "_cache", {})

    def permuted(self, shingles: Sequence[str]) -> np.ndarray:
        """(len(shingles), num_perm) uint32: every permutation's value of every shingle. A few shingles
        (one listing's) are looked up in a bounded cache of recent ones first."""
        if len(shingles) > _CACHED_PERMUTED_MAX_BATCH:
            return self._permute(shingles)
        cache: dict[str, np.ndarray] = self._cache
        missing = [s for s in dict.fromkeys(shingles) if s not in cache]
        if missing:
            if len(cache) + len(missing) > _CACHED_PERMUTED:
                cache.clear()
            cache.update(zip(missing, self._permute(missing), strict=True))
        return np.stack([cache[s] for s in shingles]) if shingles else self._permute([])

    def _permute(self, shingles: Sequence[str]) -> np.ndarray:
        h = np.fromiter(
            (struct.unpack("<I", hashlib.sha1(s.encode("utf-8")).digest()[:4])[0] for s in shingles),
            dtype=np.uint32,
            count=len(shingles),
        )
        h = _fmix32(h)
        return (h[:, None] * self.a[None, :] + self.b[None, :]).astype(np.uint32, copy=False)

    def signatures(self, texts: Sequence[str], titles: Sequence[str] | None = None) -> np.ndarray:
        """(n, num_perm) uint32 MinHash of each normalised text's `shingles` (with its title's words); a
        text without words gets the empty signature (all 2^32 - 1), which `ListingIndex` never matches.
        Blocks of _SIGNATURE_BLOCK texts at a time, so memory stays bounded however many there are."""
        titles = titles if titles is not None else [""] * len(texts)
        blocks = [
            self._signatures(texts[lo : lo + _SIGNATURE_BLOCK], titles[lo : lo + _SIGNATURE_BLOCK])
            for lo in range(0, len(texts), _SIGNATURE_BLOCK)
        ]
        return np.concatenate(blocks) if blocks else np.zeros((0, self.num_perm), np.uint32)

    def _signatures(self, texts: Sequence[str], titles: Sequence[str]) -> np.ndarray:
        n = len(texts)
        out = np.full((n, self.num_perm), _EMPTY, dtype=np.uint32)
        if n <= _FEW_TEXTS:  # one listing being scored: its shingles' cached values, one min
            for i, (text, title) in enumerate(zip(texts, titles, strict=True)):
                words = list(shingles(text, title))
                if words:
                    out[i] = self.permuted(words).min(axis=0)
            return out
        doc, codes, vocabulary = _shingle_codes(texts, titles)
        if len(codes) == 0:
            return out
        # one more row of the largest value pads short texts, so a block of texts is one gather and one
        # min over a (texts, width, num_perm) array (several times faster than a reduceat); texts go in
        # order of length, so a block is padded only to its own longest text
        permuted = np.vstack([self.permuted(vocabulary), np.full((1, self.num_perm), _EMPTY, np.uint32)])
        counts = np.bincount(doc, minlength=n)  # shingle codes come grouped by text, in text order
        starts = np.cumsum(counts) - counts
        by_length = np.argsort(counts, kind="stable")
        step = max(1, _GATHER_BUDGET // (_PADDED_WIDTH * self.num_perm))
        for lo in range(0, n, step):
            rows = by_length[lo : lo + step]
            width = int(min(counts[rows[-1]], _PADDED_WIDTH))
            if width == 0:
                continue
            taken = np.minimum(counts[rows], width)
            offsets = np.cumsum(taken) - taken
            column = np.arange(int(taken.sum())) - np.repeat(offsets, taken)
            padded = np.full((len(rows), width), len(vocabulary), dtype=np.int64)
            padded[np.repeat(np.arange(len(rows)), taken), column] = codes[np.repeat(starts[rows], taken) + column]
            out[rows] = permuted[padded].min(axis=1)
        width = _PADDED_WIDTH
        for row in np.flatnonzero(counts > width).tolist():  # the rest of very long texts
            rest = permuted[codes[starts[row] + width : starts[row] + counts[row]]]
            out[row] = np.minimum(out[row], rest.min(axis=0))
        return out


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch's pre-mix of the token hash)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingles(text: str, title: str = "") -> set[str]:
    """What a signature is taken over: the words of a normalised text and the title's words once more,
    tagged (`TITLE_TAG`), in any order.

    Words, not word sequences: a re-post reorders its title and its sentences. The title names the
    product while descriptions of one category share boilerplate sentences, so title words count twice.
    """
    return {*text.split(), *(TITLE_TAG + w for w in title.split())}


def _shingle_codes(texts: Sequence[str], titles: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(text of each shingle, shingle code, distinct shingles) for all texts, grouped by text in text
    order, without a Python loop over words: words are split and dictionary-encoded in arrow."""
    text_doc, text_code, text_vocab = _word_codes(texts)
    title_doc, title_code, title_vocab = _word_codes(titles)
    doc = np.concatenate([text_doc, title_doc])
    codes = np.concatenate([text_code, len(text_vocab) + title_code])
    order = np.argsort(doc, kind="stable")
    # a word repeated in one text is one shingle: duplicates do not change a minimum
    return doc[order], codes[order], text_vocab + [TITLE_TAG + w for w in title_vocab]


def _word_codes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(text of each word, word code, distinct words) of normalised texts (words split by spaces)."""
    if len(texts) < COLUMNAR_MIN:
        codebook: dict[str, int] = {}
        doc_list, code_list = [], []
        for i, text in enumerate(texts):
            for word in text.split():
                doc_list.append(i)
                code_list.append(codebook.setdefault(word, len(codebook)))
        return np.asarray(doc_list, dtype=np.int64), np.asarray(code_list, dtype=np.int64), list(codebook)
    split = pc.split_pattern(pa.array(texts, type=pa.large_string()), " ")
    lengths = pc.list_value_length(split).to_numpy(zero_copy_only=False).astype(np.int64)
    words = pc.list_flatten(split)
    doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    encoded = pc.dictionary_encode(words).combine_chunks() if isinstance(words, pa.ChunkedArray) else None
    encoded = encoded if encoded is not None else pc.dictionary_encode(words)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    vocabulary = encoded.dictionary.to_pylist()
    empty = [i for i, w in enumerate(vocabulary) if not w]  # "" from an empty text
    if empty:
        keep = codes != empty[0]
        doc, codes = doc[keep], codes[keep]
    return doc, codes, vocabulary


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of equal MinHash values, row by row (unbiased for the Jaccard similarity)."""
    return np.asarray((a == b).mean(axis=-1), dtype=np.float64)


# --- LSH index -----------------------------------------------------------------------------------------


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's (bands, rows per band) for a Jaccard threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    return int(lsh.b), int(lsh.r)


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
        has_words = (listings.signatures != _EMPTY).any(axis=1)
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


# --- catalogue -------------------------------------------------------------------------------------------


class Catalogue:
    """Known prohibited or restricted products (`CATALOGUE_COLUMNS`); `match` finds them in normalised texts.

    A listing word of FUZZY_MIN_LENGTH+ letters within FUZZY_RATIO of a catalogue word (rapidfuzz ratio:
    "rolexx", "switchblde") reads as that word; then a name or alias matches as a whole phrase, every
    word in order, so one shared word is never enough.
    """

    def __init__(self, entries: pd.DataFrame) -> None:
        missing = [c for c in CATALOGUE_COLUMNS if c not in entries]
        if missing:
            raise ValueError(f"catalogue: missing columns {missing} (expected {list(CATALOGUE_COLUMNS)})")
        self.entries = entries.loc[:, list(CATALOGUE_COLUMNS)].reset_index(drop=True).copy()
        self.entries["entry_id"] = self.entries["entry_id"].astype(str)
        self.entries["aliases"] = [_aliases(a) for a in self.entries["aliases"]]
        phrases: dict[str, int] = {}
        for row, (name, aliases) in enumerate(zip(self.entries["name"], self.entries["aliases"], strict=True)):
            for phrase in normalize_texts([str(name), *aliases]):
                if phrase:
                    phrases.setdefault(phrase, row)  # the first entry naming a phrase owns it
        self._phrases = phrases
        self._words = sorted({w for p in phrases for w in p.split()})
        self._fuzzy_words = [w for w in self._words if len(w) >= FUZZY_MIN_LENGTH]
        alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<!\S)(?:{alternatives})(?!\S)") if phrases else None
        # the same phrases in RE2, for a superset test over a column (no lookbehind: the spaces around a
        # phrase are consumed instead; a run of spaces between its words matches too)
        alternatives_re2 = "|".join(_re2_escape(p).replace(" ", " +") for p in sorted(phrases, key=len, reverse=True))
        self._pattern_re2 = rf"(?:^| )(?:{alternatives_re2})(?: |$)"
        self._read_as: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def read_csv(cls, path: str | Path) -> Catalogue:
        """A catalogue file: `CATALOGUE_COLUMNS`, aliases joined by "|"."""
        return cls(pd.read_csv(path, dtype=str, keep_default_na=False))

    def to_csv(self, path: Path) -> None:
        frame = self.entries.copy()
        frame["aliases"] = ["|".join(a) for a in frame["aliases"]]
        frame.to_csv(path, index=False)

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, texts: Sequence[str]) -> np.ndarray:
        """Per normalised text, the row of the first catalogue entry found (-1: none)."""
        found = np.full(len(texts), -1, dtype=np.int64)
        if self._pattern is None:
            return found
        if len(texts) < COLUMNAR_MIN:
            self._learn_words({w for t in texts for w in t.split()})
            rows: Sequence[int] = range(len(texts))
        else:
            rows = self._rows_with_catalogue_words(texts)
        read_as = self._read_as
        for i in rows:
            text = texts[i]
            canonical = " ".join(read_as.get(w, w) for w in text.split())
            hit = self._pattern.search(canonical)
            if hit is not None:
                found[i] = self._phrases[hit.group(0)]
        return found

    def _rows_with_catalogue_words(self, texts: Sequence[str]) -> list[int]:
        """Learn the texts' words, then return the rows whose canonical text (each word read as its
        catalogue word) holds a catalogue phrase: the rows `match` has to look at, found in RE2 over
        the whole column (a superset test: `match` then finds the first phrase of each in Python)."""
        split = pc.utf8_split_whitespace(pa.array(texts, type=pa.large_string()))
        words = pc.list_flatten(split).dictionary_encode()
        distinct = words.dictionary.to_pylist()
        self._learn_words({w for w in distinct if w})
        read_as = self._read_as
        canonical_words = pa.array([read_as.get(w, w) for w in distinct], type=pa.large_string()).take(words.indices)
        space = pa.scalar(" ", pa.large_string())
        canonical = pc.binary_join(type(split).from_arrays(split.offsets, canonical_words), space)
        hit = pc.match_substring_regex(canonical, self._pattern_re2).to_numpy(zero_copy_only=False)
        return np.flatnonzero(hit).tolist()

    def _learn_words(self, words: set[str]) -> None:
        """Remember which new listing words read as a catalogue word (one rapidfuzz cdist per batch)."""
        from rapidfuzz import fuzz, process

        new = [w for w in words if w not in self._read_as and len(w) >= FUZZY_MIN_LENGTH]
        if not new or not self._fuzzy_words:
            return
        scores = process.cdist(new, self._fuzzy_words, scorer=fuzz.ratio, score_cutoff=FUZZY_RATIO, workers=1)
        best = scores.argmax(axis=1)
        learned = {
            w: self._fuzzy_words[j]
            for w, j, s in zip(new, best.tolist(), scores.max(axis=1).tolist(), strict=True)
            if s
        }
        with self._lock:
            if len(self._read_as) > 1_000_000:  # bounded: forget and relearn
                self._read_as = {}
            self._read_as.update({w: learned.get(w, w) for w in new})


def _re2_escape(text: str) -> str:
    """`text` as a literal in an RE2 pattern: every character but letters, digits and spaces escaped."""
    return "".join(c if c.isalnum() or c == " " else f"\\{c}" for c in text)


def _aliases(value: Any) -> list[str]:
    if isinstance(value, str):
        return [a.strip() for a in value.split("|") if a.strip()]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [str(a).strip() for a in value if str(a).strip()]


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
    """Boolean mask of rows labelled rejected (validated label 1, or a configured reject value)."""
    label = frame[config.label]
    return label.isin(list(config.label_reject)) if label.dtype == object else label.astype("float64").eq(1.0)


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
