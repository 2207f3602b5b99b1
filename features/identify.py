"""Product identification: is a listing a re-post of a rejected listing, or a known prohibited product?

Two matchers, one normalisation:
- `normalize_texts` lowercases, undoes common obfuscation (digits and symbols for letters inside a word:
  "R0lex" -> "rolex", "sw1tchblade" -> "switchblade"; dots inside a word: "c.u.r.e.s" -> "cures") and
  keeps only words separated by single spaces.
- `ListingIndex`: near-duplicate search over listings' normalised title + description + brand with
  MinHash LSH (Broder 1997; banding as in Leskovec, Rajaraman & Ullman, Mining of Massive Datasets ch. 3).
  Shingles are the words and word pairs of the text. Signatures use datasketch's MinHash hash family
  (SHA-1 32-bit token hash, MurmurHash3 finalizer, affine32 permutations with the library's seeded
  parameters) computed for a whole column at once with numpy; a test holds them equal to
  `datasketch.MinHash`. The band count and rows per band are datasketch's `MinHashLSH` choice for the
  LSH threshold. Candidates from the bands are checked with the estimated Jaccard similarity (share of
  equal signature values, unbiased for the Jaccard similarity of the shingle sets).
- `Catalogue`: known prohibited or restricted products by name and aliases. A phrase matches on whole
  words only, after each listing word that is a close misspelling of a catalogue word (rapidfuzz ratio
  >= `FUZZY_RATIO`, words of `FUZZY_MIN_LENGTH`+ letters) is read as that word. Every word of an alias
  must be there, in order: "ivory color" shares one word with "ivory carving" and matches nothing.

`ProductIdentifier` holds both (plus the re-post similarity threshold) for the service and the bundle;
`identify_history` is the point-in-time version for training data: a row matches only listings
rejected and reviewed strictly before it was created.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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
# Estimated Jaccard similarity at which a candidate counts as a re-post. Chosen on validation seeds by
# `choose_threshold` (bench/bench_identify.py --choose; bench/RESULTS_IDENTIFY.md), not for one seed.
REPOST_THRESHOLD = 0.6
MAX_BUCKET = 256  # candidates read per band and query (the newest of an oversized bucket)
FUZZY_RATIO = 88.0
FUZZY_MIN_LENGTH = 5
_MASK32 = np.uint64(0xFFFFFFFF)

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "!": "i", "$": "s"})
_DOTS_IN_WORD = re.compile(r"(?<=\w)[.\-_*](?=\w)")
_TRAILING_SYMBOL = re.compile(r"(?:[@!]|(?<![^\W\d_])\$)(?!\w)")  # "$" after a letter is an "s": "cure$"
# a word with a letter and a digit or symbol that may stand for one
_OBFUSCATED_WORD = re.compile(r"(?<![\w@!$])(?=[\w@!$]*[^\W\d_])(?=[\w@!$]*[013457@!$])[\w@!$]+")
_NOT_WORD = re.compile(r"[^\w\x00]+")
_SEPARATOR = "\x00"
TITLE_TAG = "title:"  # shingles of the title's words carry it (normalised text has no ":")
_NORMALIZE_CHUNK = 50_000


def normalize_texts(texts: Iterable[str]) -> list[str]:
    """Matching form of each text: lowercase, obfuscation undone, words separated by single spaces.

    Digits and symbols stand for letters only inside a word that has a letter ("r0lex", "@pple"), so
    "size 40" keeps its number; a symbol ending a word is punctuation ("cancer!" -> "cancer").
    Runs over chunks joined into one string, so a million texts cost a few regex passes, not a million.
    """
    out: list[str] = []
    chunk: list[str] = []
    for text in texts:
        chunk.append(text.replace(_SEPARATOR, " ") if _SEPARATOR in text else text)
        if len(chunk) == _NORMALIZE_CHUNK:
            out += _normalize_joined(chunk)
            chunk = []
    return out + _normalize_joined(chunk) if chunk else out


def _normalize_joined(texts: list[str]) -> list[str]:
    joined = unicodedata.normalize("NFKC", _SEPARATOR.join(texts)).lower()
    joined = _DOTS_IN_WORD.sub("", joined)
    joined = _TRAILING_SYMBOL.sub(" ", joined)
    joined = _OBFUSCATED_WORD.sub(_unleet, joined)
    joined = _NOT_WORD.sub(" ", joined)
    return [" ".join(text.split()) for text in joined.split(_SEPARATOR)]


def _unleet(word: re.Match[str]) -> str:
    return word.group(0).translate(_LEET)


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
    return normalize_texts(listing_texts(frame, columns)), normalize_texts(listing_texts(frame, columns[:1]))


def matching_records(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """`matching_texts` for listing dicts."""
    return normalize_texts(record_texts(records, columns)), normalize_texts(record_texts(records, columns[:1]))


# --- MinHash signatures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HashFamily:
    """datasketch's affine32 MinHash: token -> sha1_hash32 -> fmix32 -> a_k * h + b_k (mod 2^32)."""

    num_perm: int = NUM_PERM
    seed: int = MINHASH_SEED
    a: np.ndarray = field(init=False, repr=False, compare=False)
    b: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from datasketch import MinHash

        a, b = MinHash(num_perm=self.num_perm, seed=self.seed, scheme="affine32").permutations
        object.__setattr__(self, "a", np.asarray(a, dtype=np.uint32))
        object.__setattr__(self, "b", np.asarray(b, dtype=np.uint32))

    def permuted(self, shingles: Sequence[str]) -> np.ndarray:
        """(len(shingles), num_perm) uint32: every permutation's value of every shingle."""
        h = np.fromiter(
            (struct.unpack("<I", hashlib.sha1(s.encode("utf-8")).digest()[:4])[0] for s in shingles),
            dtype=np.uint32,
            count=len(shingles),
        )
        h = _fmix32(h)
        return (h[:, None] * self.a[None, :] + self.b[None, :]).astype(np.uint32, copy=False)

    def signatures(self, texts: Sequence[str], titles: Sequence[str] | None = None) -> np.ndarray:
        """(n, num_perm) uint32 MinHash of each normalised text's `shingles` (with its title's words); a
        text without words gets the empty signature (all 2^32 - 1), which `ListingIndex` never matches."""
        n = len(texts)
        out = np.full((n, self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        doc, codes, vocabulary = _shingle_codes(texts, titles if titles is not None else [""] * n)
        if len(codes) == 0:
            return out
        permuted = self.permuted(vocabulary)
        order = np.argsort(doc, kind="stable")
        doc, codes = doc[order], codes[order]
        starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
        docs_per_chunk = max(1, len(starts) * (4_000_000 // self.num_perm) // len(codes))  # bounded memory
        for first in range(0, len(starts), docs_per_chunk):
            local = starts[first : first + docs_per_chunk]
            hi = starts[first + docs_per_chunk] if first + docs_per_chunk < len(starts) else len(codes)
            out[doc[local]] = np.minimum.reduceat(permuted[codes[local[0] : hi]], local - local[0], axis=0)
        return out


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch's pre-mix of the token hash)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingles(text: str, title: str = "") -> set[str]:
    """What a signature is taken over: the words and adjacent word pairs of a normalised text, and the
    title's words once more, tagged (`TITLE_TAG`), in any order.

    The title names the product; descriptions of one category share boilerplate sentences. Counting
    title words twice makes two listings whose titles name different products differ, while a
    reworded title (words reordered, one added or dropped) loses little.
    """
    words = text.split()
    return {
        *words,
        *(f"{u} {v}" for u, v in zip(words[:-1], words[1:], strict=True)),
        *(TITLE_TAG + w for w in title.split()),
    }


def _shingle_codes(texts: Sequence[str], titles: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(document of each shingle, shingle code, distinct shingles) for all texts, without a Python loop
    over shingles: words are factorised once, word pairs are pairs of word codes."""
    split = [f"{t} {_tagged(title)}".split() for t, title in zip(texts, titles, strict=True)]
    lengths = np.fromiter((len(s) for s in split), dtype=np.int64, count=len(split))
    words = pd.Series([w for s in split for w in s], dtype=object)
    if words.empty:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), []
    word_code, word_vocab = pd.factorize(words)
    word_code = word_code.astype(np.int64)
    doc = np.repeat(np.arange(len(split), dtype=np.int64), lengths)
    is_tagged = words.str.startswith(TITLE_TAG).to_numpy(dtype=bool)
    pair = np.flatnonzero((doc[1:] == doc[:-1]) & ~is_tagged[1:] & ~is_tagged[:-1])
    n_words = len(word_vocab)
    pair_key = word_code[pair] * n_words + word_code[pair + 1]
    pair_keys, pair_code = np.unique(pair_key, return_inverse=True)
    vocab = [str(w) for w in word_vocab]
    first, second = np.divmod(pair_keys, n_words)
    vocabulary = vocab + [f"{vocab[u]} {vocab[v]}" for u, v in zip(first.tolist(), second.tolist(), strict=True)]
    codes = np.concatenate([word_code, n_words + pair_code.reshape(-1)])
    # a word repeated in one text is one shingle: duplicates do not change a minimum
    return np.concatenate([doc, doc[pair]]), codes, vocabulary


def _tagged(title: str) -> str:
    return " ".join(TITLE_TAG + w for w in title.split())


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
class _Segment:
    """Indexed listings: ids, time each became known (us), signatures, and per band the sorted keys."""

    ids: np.ndarray
    times: np.ndarray
    signatures: np.ndarray
    keys: np.ndarray  # (bands, n) uint64, each row sorted by (key, time)
    order: np.ndarray  # (bands, n) row of each sorted key

    @classmethod
    def build(cls, ids: np.ndarray, times: np.ndarray, signatures: np.ndarray, bands: int, rows: int) -> _Segment:
        keys = band_keys(signatures, bands, rows).T  # (bands, n)
        order = np.stack([np.lexsort((times, k)) for k in keys]) if len(ids) else np.zeros((bands, 0), np.int64)
        sorted_keys = np.take_along_axis(keys, order, axis=1)
        return cls(ids, times, signatures, sorted_keys, order)

    def __len__(self) -> int:
        return len(self.ids)

    def candidates(self, query_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query row, indexed row) pairs sharing at least one band (at most MAX_BUCKET per band and
        query: the newest of a bucket)."""
        queries, found = [], []
        for band in range(self.keys.shape[0]):
            column = self.keys[band]
            lo = np.searchsorted(column, query_keys[:, band], side="left")
            hi = np.searchsorted(column, query_keys[:, band], side="right")
            lo = np.maximum(lo, hi - MAX_BUCKET)
            counts = hi - lo
            total = int(counts.sum())
            if not total:
                continue
            q = np.repeat(np.arange(len(query_keys)), counts)
            offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            queries.append(q)
            found.append(self.order[band][np.repeat(lo, counts) + offsets])
        if not queries:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        pairs = np.unique(np.concatenate(queries) * len(self) + np.concatenate(found))
        return np.divmod(pairs, len(self))


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: each band's `rows` signature values mixed into one key; an empty signature
    (no words) gets keys of its own per row, so it never shares a band."""
    n = len(signatures)
    keys = np.zeros((n, bands), dtype=np.uint64)
    multipliers = np.random.default_rng(0).integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)
    for band in range(bands):
        block = signatures[:, band * rows : (band + 1) * rows].astype(np.uint64)
        keys[:, band] = (block * multipliers[None, :]).sum(axis=1, dtype=np.uint64) + np.uint64(band)
    empty = (signatures == np.iinfo(np.uint32).max).all(axis=1)
    if empty.any():
        keys[empty] = np.uint64(2**63) + np.arange(int(empty.sum()), dtype=np.uint64)[:, None]
    return keys


@dataclass
class Neighbours:
    """Query results: for query row `query[i]`, indexed listing `ids[i]` at `similarity[i]`."""

    query: np.ndarray
    ids: np.ndarray
    rows: np.ndarray
    similarity: np.ndarray


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
    ) -> None:
        self.family = family or HashFamily()
        self.lsh_threshold = lsh_threshold
        self.bands, self.rows = lsh_bands(lsh_threshold, self.family.num_perm)
        self.tail_limit = tail_limit
        empty = self._segment(
            np.zeros(0, object), np.zeros(0, np.int64), np.zeros((0, self.family.num_perm), np.uint32)
        )
        self._segments: tuple[_Segment, _Segment] = (empty, empty)
        self._known: set[str] = set()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return sum(len(s) for s in self._segments)

    def __contains__(self, listing_id: object) -> bool:
        return listing_id in self._known

    def _segment(self, ids: np.ndarray, times: np.ndarray, signatures: np.ndarray) -> _Segment:
        return _Segment.build(ids, times, signatures, self.bands, self.rows)

    def add(
        self, ids: Sequence[str], texts: Sequence[str], titles: Sequence[str], times_us: Sequence[int] | np.ndarray
    ) -> int:
        """Index listings (normalised texts and titles) known from `times_us`; ids already indexed are
        skipped. Returns how many were added."""
        with self._lock:
            keep = list({listing_id: i for i, listing_id in enumerate(ids) if listing_id not in self._known}.values())
            if not keep:
                return 0
            new_ids = np.asarray([ids[i] for i in keep], dtype=object)
            new_times = np.asarray(times_us, dtype=np.int64)[keep]
            signatures = self.family.signatures([texts[i] for i in keep], [titles[i] for i in keep])
            self.add_signatures(new_ids, new_times, signatures)
            return len(keep)

    def add_signatures(self, ids: np.ndarray, times_us: np.ndarray, signatures: np.ndarray) -> None:
        with self._lock:
            base, tail = self._segments
            ids = np.concatenate([tail.ids, ids])
            times = np.concatenate([tail.times, times_us])
            signatures = np.concatenate([tail.signatures, signatures])
            if len(ids) > self.tail_limit:
                merged = (
                    np.concatenate([base.ids, ids]),
                    np.concatenate([base.times, times]),
                    np.concatenate([base.signatures, signatures]),
                )
                empty = self._segment(ids[:0], times[:0], signatures[:0])
                self._segments = (self._segment(*merged), empty)
            else:
                self._segments = (base, self._segment(ids, times, signatures))
            self._known.update(ids.tolist())

    def query(
        self,
        signatures: np.ndarray,
        before_us: np.ndarray | None = None,
        min_similarity: float = 0.0,
        exclude: Sequence[str] | None = None,
    ) -> Neighbours:
        """Every indexed listing sharing a band with a query signature, at `min_similarity` or more,
        known strictly before `before_us` of its query (None: any time), other than `exclude` of its query."""
        keys = band_keys(signatures, self.bands, self.rows)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        offset = 0
        for segment in self._segments:
            q, c = segment.candidates(keys)
            if len(q):
                similarity = _chunked_similarity(signatures, segment.signatures, q, c)
                keep = similarity >= min_similarity
                if before_us is not None:
                    keep &= segment.times[c] < before_us[q]
                if exclude is not None:
                    keep &= segment.ids[c] != np.asarray(exclude, dtype=object)[q]
                parts.append((q[keep], segment.ids[c[keep]], offset + c[keep], similarity[keep]))
            offset += len(segment)
        if not parts:
            return Neighbours(np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0, np.int64), np.zeros(0))
        q, ids, rows, sim = (np.concatenate(p) for p in zip(*parts, strict=True))
        return Neighbours(q, ids, rows, sim)

    def best(
        self,
        signatures: np.ndarray,
        min_similarity: float,
        before_us: np.ndarray | None = None,
        exclude: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the most similar indexed listing at `min_similarity` or more: (ids, "" for none;
        similarity, 0.0 for none)."""
        n = len(signatures)
        found = self.query(signatures, before_us, min_similarity, exclude)
        ids, similarity = np.full(n, "", dtype=object), np.zeros(n)
        if len(found.query):
            order = np.lexsort((-found.similarity, found.query))
            first = order[np.r_[True, found.query[order][1:] != found.query[order][:-1]]]
            ids[found.query[first]] = found.ids[first]
            similarity[found.query[first]] = found.similarity[first]
        return ids, similarity

    def nearest(self, signature: np.ndarray, k: int, exclude: str | None = None) -> list[tuple[int, str, float]]:
        """The k most similar indexed listings to one signature: (row, id, similarity), best first."""
        found = self.query(signature[None, :], exclude=[exclude or ""])
        order = np.lexsort((found.ids.astype(str), -found.similarity))[:k]
        return [(int(found.rows[i]), str(found.ids[i]), float(found.similarity[i])) for i in order]

    @property
    def ids(self) -> np.ndarray:
        return np.concatenate([s.ids for s in self._segments])

    def signature_of(self, listing_id: str) -> np.ndarray | None:
        """The indexed signature of a listing (None: not indexed); a scan, for one-off look-ups."""
        if listing_id not in self._known:
            return None
        for segment in reversed(self._segments):
            rows = np.flatnonzero(segment.ids == listing_id)
            if len(rows):
                return np.asarray(segment.signatures[rows[-1]])
        return None

    def save(self, directory: Path, name: str) -> None:
        base, tail = self._segments
        np.savez(
            directory / f"{name}.npz",
            ids=np.concatenate([base.ids, tail.ids]).astype(str),
            times=np.concatenate([base.times, tail.times]),
            signatures=np.concatenate([base.signatures, tail.signatures]),
        )

    @classmethod
    def load(cls, directory: Path, name: str, family: HashFamily, lsh_threshold: float) -> ListingIndex:
        index = cls(family, lsh_threshold)
        with np.load(directory / f"{name}.npz", allow_pickle=False) as data:
            ids, times, signatures = data["ids"].astype(object), data["times"], data["signatures"]
        if signatures.shape[1:] != (family.num_perm,):
            raise ValueError(f"{name}.npz: signatures of {signatures.shape[1:]} values, expected {family.num_perm}")
        index._segments = (index._segment(ids, times, signatures), index._segments[1])
        index._known = set(ids.tolist())
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
        self._learn_words({w for t in texts for w in t.split()})
        read_as = self._read_as
        for i, text in enumerate(texts):
            canonical = " ".join(read_as.get(w, w) for w in text.split())
            hit = self._pattern.search(canonical)
            if hit is not None:
                found[i] = self._phrases[hit.group(0)]
        return found

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


class ProductIdentifier:
    """Re-post matching against rejected listings, catalogue matching, and similar past cases (an index
    over every reviewed listing with its verdict), for the listings' text columns.

    `synced_until` is how far the service has added verdicts from its decision log (None: not yet).
    """

    def __init__(
        self,
        text_columns: Sequence[str],
        rejects: ListingIndex | None = None,
        catalogue: Catalogue | None = None,
        threshold: float = REPOST_THRESHOLD,
        reviewed: ListingIndex | None = None,
        outcomes: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.text_columns = list(text_columns)
        self.rejects = rejects if rejects is not None else ListingIndex()
        self.catalogue = catalogue
        self.threshold = threshold
        self.reviewed = reviewed if reviewed is not None else ListingIndex(self.rejects.family)
        self.outcomes = outcomes if outcomes is not None else {}  # listing id -> (verdict, violation reason)
        self.synced_until: Any = None

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
        ids = [str(r.get(id_column)) for r in records]
        texts, titles = matching_records(records, self.text_columns)
        for listing_id, verdict, reason in zip(ids, verdicts, reasons, strict=True):
            self.outcomes[listing_id] = (verdict, reason)
        self.reviewed.add(ids, texts, titles, times_us)
        rejected = [i for i, v in enumerate(verdicts) if v == "reject"]
        return self.rejects.add(
            [ids[i] for i in rejected],
            [texts[i] for i in rejected],
            [titles[i] for i in rejected],
            [times_us[i] for i in rejected],
        )

    def signature(self, record: dict[str, Any]) -> np.ndarray:
        texts, titles = matching_records([record], self.text_columns)
        return self.reviewed.family.signatures(texts, titles)[0]

    def similar(self, signature: np.ndarray, k: int, exclude: str | None = None) -> list[PastCase]:
        """The k most similar reviewed listings to a signature (LSH candidates, best estimated Jaccard
        first), other than `exclude`."""
        found = self.reviewed.nearest(signature, k, exclude)
        cases = []
        for _, listing_id, similarity in found:
            verdict, reason = self.outcomes.get(listing_id, ("", ""))
            cases.append(PastCase(listing_id, verdict, reason, round(similarity, 4)))
        return cases

    def identify_records(self, records: Sequence[dict[str, Any]]) -> list[Identification]:
        """Identify listing dicts against everything indexed so far."""
        normalized, titles = matching_records(records, self.text_columns)
        signatures = self.rejects.family.signatures(normalized, titles)
        repost_of, similarity = self.rejects.best(signatures, self.threshold)
        entries = self.catalogue.match(normalized) if self.catalogue is not None else np.full(len(records), -1)
        rows = zip(repost_of, similarity.tolist(), entries.tolist(), strict=True)
        return [self._identification(r, s, e) for r, s, e in rows]

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
        family = self.rejects.family
        meta = {
            "text_columns": self.text_columns,
            "threshold": self.threshold,
            "lsh_threshold": self.rejects.lsh_threshold,
            "num_perm": family.num_perm,
            "seed": family.seed,
            "hash_family": "datasketch affine32 (sha1_hash32)",
        }
        (directory / "identify.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> ProductIdentifier:
        meta = json.loads((directory / "identify.json").read_text())
        family = HashFamily(int(meta["num_perm"]), int(meta["seed"]))
        rejects = ListingIndex.load(directory, "rejects", family, float(meta["lsh_threshold"]))
        reviewed = ListingIndex.load(directory, "reviewed", family, float(meta["lsh_threshold"]))
        catalogue_file = directory / "catalogue.csv"
        catalogue = Catalogue.read_csv(catalogue_file) if catalogue_file.is_file() else None
        table = pd.read_parquet(directory / "outcomes.parquet")
        outcomes = dict(
            zip(table["listing_id"], zip(table["verdict"], table["violation_reason"], strict=True), strict=True)
        )
        return cls(meta["text_columns"], rejects, catalogue, float(meta["threshold"]), reviewed, outcomes)


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


def build_identifier(
    frame: pd.DataFrame, config: DataConfig, catalogue: pd.DataFrame | None, threshold: float = REPOST_THRESHOLD
) -> ProductIdentifier | None:
    """The identifier a bundle ships: every rejected listing of `frame` indexed, and the catalogue.
    None for data without text columns (nothing to match)."""
    columns = [c for c in config.text if c in frame]
    if not columns:
        return None
    family = HashFamily()
    texts, titles = matching_texts(frame, columns)
    signatures = family.signatures(texts, titles)
    ids = frame[config.id].astype(str).to_numpy(dtype=object)
    known = _review_times(frame, config)
    rejected = rejected_rows(frame, config).to_numpy()
    rejects, reviewed = ListingIndex(family), ListingIndex(family)
    rejects.add_signatures(ids[rejected], known[rejected], signatures[rejected])
    reviewed.add_signatures(ids, known, signatures)
    reasons = (
        frame[config.violation_reason].astype("string").fillna("").to_numpy(dtype=object)
        if config.violation_reason and config.violation_reason in frame
        else np.full(len(frame), "", dtype=object)
    )
    verdicts = np.where(rejected, "reject", "approve")
    reasons = np.where(rejected, reasons, "")
    outcomes = dict(zip(ids.tolist(), zip(verdicts.tolist(), reasons.tolist(), strict=True), strict=True))
    entries = Catalogue(catalogue) if catalogue is not None else None
    return ProductIdentifier(columns, rejects, entries, threshold, reviewed, outcomes)


def _review_times(frame: pd.DataFrame, config: DataConfig) -> np.ndarray:
    from features.validate import review_time_column

    column = review_time_column(config)
    if column in frame:
        return times_us(frame, column)
    created = times_us(frame, config.timestamp if config.timestamp else None)
    if config.timestamp and config.timestamp in frame:
        return created + int(config.review_lag_days * 86_400 * 1_000_000)
    return created


def identify_history(frame: pd.DataFrame, config: DataConfig, catalogue: pd.DataFrame | None) -> pd.DataFrame:
    """Point-in-time product identification of labelled rows (C3): each row is matched only against
    rows rejected and reviewed strictly before it was created (never itself); the catalogue is
    timeless. Columns `HISTORY_COLUMNS`, same index as `frame`; "" / 0.0 where nothing matched."""
    out = pd.DataFrame(
        {PRODUCT_MATCH: "", "repost_of": "", "repost_similarity": 0.0, "catalogue_entry": ""}, index=frame.index
    )
    columns = [c for c in config.text if c in frame]
    if not columns or frame.empty:
        return out
    normalized, titles = matching_texts(frame, columns)
    family = HashFamily()
    signatures = family.signatures(normalized, titles)
    ids = frame[config.id].astype(str).to_numpy(dtype=object)
    rejected = rejected_rows(frame, config).to_numpy()
    index = ListingIndex(family)
    index.add_signatures(ids[rejected], _review_times(frame, config)[rejected], signatures[rejected])
    created = times_us(frame, config.timestamp)
    repost_of, similarity = index.best(signatures, REPOST_THRESHOLD, before_us=created, exclude=ids.tolist())
    out["repost_of"] = repost_of
    out["repost_similarity"] = similarity
    entries = Catalogue(catalogue).match(normalized) if catalogue is not None and len(catalogue) else None
    if entries is not None:
        names = Catalogue(catalogue).entries["entry_id"].to_numpy(dtype=object)
        out["catalogue_entry"] = np.where(entries >= 0, names[np.maximum(entries, 0)], "")
    repost = np.where(out["repost_of"].to_numpy(dtype=object) != "", "repost", "")
    found = np.where(out["catalogue_entry"].to_numpy(dtype=object) != "", "catalogue", "")
    out[PRODUCT_MATCH] = pd.Series(repost, index=frame.index).str.cat(pd.Series(found, index=frame.index), sep=" ")
    out[PRODUCT_MATCH] = out[PRODUCT_MATCH].str.strip()
    return out


def choose_threshold(similarity: np.ndarray, is_repost: np.ndarray, precision: float = 0.95) -> float:
    """The lowest similarity threshold whose matches are re-posts at `precision` or more on validation
    rows (each row's best candidate similarity, 0 for none, and whether it truly re-posts a reject).
    The threshold is a one-parameter choice on held-out seeds; the test seeds then measure it."""
    candidates = np.unique(similarity[similarity > 0])
    for threshold in candidates:
        hits = similarity >= threshold
        if hits.any() and is_repost[hits].mean() >= precision:
            return float(threshold)
    return 1.0
