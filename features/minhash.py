"""Text normalisation and MinHash signatures for near-duplicate matching.

- `normalize_texts` lowercases, undoes common obfuscation ("R0lex" -> "rolex", "sw1tchblade" ->
  "switchblade", "c.u.r.e.s" -> "cures") and keeps only words separated by single spaces; from
  COLUMNAR_MIN texts the same rules run in RE2 over the whole column.
- `HashFamily`: MinHash (Broder 1997) in datasketch's hash family (SHA-1 32-bit token hash, MurmurHash3
  finalizer, affine32 permutations with the library's seeded parameters), computed for a whole column
  at once with numpy; a test holds it equal to `datasketch.MinHash`. Shingles are the words of the text
  plus the title's words once more (`shingles`).
- `lsh_bands`: datasketch's `MinHashLSH` choice of bands and rows per band for a Jaccard threshold
  (banding as in Leskovec, Rajaraman & Ullman, Mining of Massive Datasets ch. 3).
"""

from __future__ import annotations

import hashlib
import re
import struct
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.lexicon import WORD_BYTES, map_bytes

NUM_PERM = 64
MINHASH_SEED = 1  # datasketch's default seed
LSH_WEIGHTS = (0.3, 0.7)  # a missed candidate weighted above a needless one in the choice of bands
EMPTY_SIGNATURE = np.iinfo(np.uint32).max  # every value of the signature of a text without words
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
    """The RE2 rules over a column (NFKC already applied: pyarrow's utf8_normalize leaves marks
    decomposed). ASCII texts, nearly all of them as a rule, take `_normalize_ascii`."""
    is_ascii = pc.fill_null(pc.string_is_ascii(texts), False).to_numpy(zero_copy_only=False)  # nulls: RE2
    if is_ascii.all():
        return _normalize_ascii(texts)
    out = np.empty(len(texts), dtype=object)
    for rows, normalize in ((np.flatnonzero(is_ascii), _normalize_ascii), (np.flatnonzero(~is_ascii), _normalize_re2)):
        if len(rows):
            out[rows] = normalize(texts.take(pa.array(rows)))
    return out.tolist()


def _normalize_re2(texts: pa.Array) -> list[str]:
    texts = pc.utf8_lower(texts)
    for _ in range(2):
        texts = pc.replace_substring_regex(texts, _DOTS_IN_WORD_RE2, r"\1\2")
    texts = pc.replace_substring_regex(texts, _TRAILING_SYMBOLS_RE2, r" \1")
    for symbol, letter in _LEET.items():
        texts = pc.replace_substring(texts, symbol, letter)
    texts = pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, _NOT_WORD_RE2, " "))
    return texts.to_pylist()


# In ASCII text the Unicode classes of the RE2 rules are these bytes: the same patterns, cheaper to run.
_DOTS_IN_WORD_ASCII = r"([A-Za-z0-9_])[.\-_*]([A-Za-z0-9_])"
_TRAILING_SYMBOLS_ASCII = r"[@!$]+([^A-Za-z0-9_]|$)"
_IS_WORD_BYTE = np.zeros(256, dtype=bool)
_IS_WORD_BYTE[WORD_BYTES] = True
# each byte as a letter where it stands for one (`_LEET`: one byte for one letter, which no other rule
# reads), then every byte that is not a word character as a space
_LEET_BYTES = np.arange(256, dtype=np.uint8)
_LEET_BYTES[[ord(symbol) for symbol in _LEET]] = [ord(letter) for letter in _LEET.values()]
_WORD_OR_SPACE = np.where(_IS_WORD_BYTE[_LEET_BYTES], _LEET_BYTES, np.uint8(ord(" "))).astype(np.uint8)
_ONE_SPACE = pa.scalar(" ", pa.large_string())


def _normalize_ascii(texts: pa.Array) -> list[str]:
    r"""`_normalize_re2` of ASCII texts, the same strings: the regular expressions with ASCII classes, and
    the last two rules without one. Symbols read as letters and every other non-word byte turned into a
    space take one byte table; splitting on the runs of spaces and joining the words with one space then
    leaves what replacing `[^\p{L}\p{N}_]+` by a space and trimming does. (RE2's replace kernel is slow
    where it matches at every gap between words.) 25k listings' descriptions: 49-56 ms against 132-138,
    their titles 15-19 against 46-51."""
    texts = pc.ascii_lower(texts.cast(pa.large_string()))
    for _ in range(2):
        texts = pc.replace_substring_regex(texts, _DOTS_IN_WORD_ASCII, r"\1\2")
    texts = pc.replace_substring_regex(texts, _TRAILING_SYMBOLS_ASCII, r" \1")
    words = pc.ascii_split_whitespace(pc.ascii_trim_whitespace(map_bytes(texts, _WORD_OR_SPACE)))
    return pc.binary_join(words, _ONE_SPACE).to_pylist()


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
        out = np.full((n, self.num_perm), EMPTY_SIGNATURE, dtype=np.uint32)
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
        permuted = np.vstack([self.permuted(vocabulary), np.full((1, self.num_perm), EMPTY_SIGNATURE, np.uint32)])
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


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's (bands, rows per band) for a Jaccard threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    return int(lsh.b), int(lsh.r)
