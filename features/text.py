r"""Text risk score: hashed word uni+bi-grams -> a linear model whose decision score is one feature.

On the training rows the score is out-of-fold (k seeded folds): each row is scored by a model that
never saw it, so the downstream model does not learn to trust an overfit score. `fit` on all training
rows gives the weights used for every other row (calibration, test, serving).

The state is plain data (vectorizer parameters as JSON, the weights as one float64 array), so a
bundle needs no pickle; `HashingVectorizer` is stateless, so rebuilding it from the parameters gives
the same features.

Vectorising has three implementations that give bit-identical matrices. `vectorize_per_document`
runs sklearn's analyzers and `FeatureHasher` per document (about 10-40 us each for word n-grams, several
times that with char n-grams): the reference. For one to a few documents, the same word analyzer with
the hasher's MurmurHash3 called per n-gram skips `FeatureHasher`'s ~20 us per call. Batches of
`VECTORISED_MIN_DOCS` or more are tokenised by pyarrow's RE2 kernels and hashed by a numpy port of that
MurmurHash3, each distinct token and n-gram once (about 2-4 us a document). Char n-grams (char_wb: inside
words) are made per distinct word, hashed by the same port, and summed per document: by a sparse product
(word counts @ each word's n-gram counts) for batches, from the columns kept for recent words for a few
documents. Documents with non-ASCII characters, where sklearn's Unicode rules and the byte-level ones
differ, still go one at a time. Very large inputs are also split across processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.feature_extraction import FeatureHasher
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.utils import murmurhash3_32

from features import lexicon

PARALLEL_MIN_DOCS = 2_000_000  # at ~3 us a document, shipping fewer to worker processes costs more than it saves
PER_NGRAM_HASH_MAX_DOCS = 4  # up to this many documents, hashing n-grams one by one beats FeatureHasher
VECTORISED_MIN_DOCS = 48  # from this many, the vectorised path's fixed ~0.4 ms (RE2 compiles, numpy calls) pays
VECTORISED_BLOCK_DOCS = 4096  # larger inputs are vectorised in blocks of this many (cache-sized temporaries)


# Phrases whose signal belongs to the monotone lexicon-count features, not to the text model: the text
# model cuts them out of every document before hashing, so adding a prohibited term to a listing moves only its
# (monotone) hit count, and the text model spends its capacity on what the lists miss (obfuscated
# spellings, new schemes).
POLICY_OWNED_TERMS: tuple[str, ...] = (*lexicon.PROHIBITED_TERMS, *lexicon.HEALTH_CLAIM_PHRASES)


@lru_cache(maxsize=8)
def _word_analyzer(ngram_range: tuple[int, int]) -> Callable[[str], list[str]]:
    """sklearn's word analyzer (default token pattern: words of 2+ chars) for lower-cased documents,
    built once per n-gram range."""
    return HashingVectorizer(ngram_range=ngram_range, lowercase=False).build_analyzer()


@lru_cache(maxsize=8)
def _char_wb_analyzer(ngram_range: tuple[int, int]) -> Callable[[str], list[str]]:
    """sklearn's char_wb analyzer (n-grams inside words padded by one space) for lower-cased documents."""
    return HashingVectorizer(analyzer="char_wb", ngram_range=ngram_range, lowercase=False).build_analyzer()


def _without_policy_terms(doc: str) -> str:
    return lexicon.compile_terms(POLICY_OWNED_TERMS).sub(" ", doc)


def documents(frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> list[str]:
    """One lower-cased document per row: the text columns joined by a space (missing -> ""); every
    document is "" when there are no text columns."""
    columns = list(columns)
    if not columns:
        return [""] * len(frame)
    values = [pa.array(frame[column].fillna("").astype("str"), type=pa.large_string()) for column in columns]
    joined = pc.binary_join_element_wise(*values, _SPACE) if len(values) > 1 else values[0]
    if pc.all(pc.string_is_ascii(joined)).as_py() is not False:  # ASCII: lower-cased alike, in one pass
        return pc.ascii_lower(joined).to_pylist()
    return [doc.lower() for doc in joined.to_pylist()]  # str.lower, exactly as `document_one`


_SPACE = pa.scalar(" ", pa.large_string())


def document_one(values: Iterable[str]) -> str:
    """`documents` for one listing's text values (serving path)."""
    return " ".join(values).lower()


@dataclass
class TextModel:
    """Hashed n-gram logistic model (SGD). Call `fit_oof` on training rows, then `score` elsewhere."""

    n_features: int = 2**18
    ngram_range: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = None  # e.g. (3, 5) for char_wb n-grams; off by default (cost)
    alpha: float = 1e-5
    max_iter: int = 5  # epochs; on 600k synthetic rows AUC was flat from 3 to 20 epochs, time was not
    folds: int = 5
    seed: int = 0
    n_jobs: int = -1
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intercept: float = 0.0

    # --- vectorising -------------------------------------------------------------------------------
    def _analyzers(self) -> list[Callable[[str], list[str]]]:
        """Tokenisers of `HashingVectorizer`: words (`_word_analyzer`), and char n-grams if configured."""
        analyzers = [_word_analyzer(tuple(self.ngram_range))]
        if self.char_ngrams is not None:
            analyzers.append(_char_wb_analyzer(tuple(self.char_ngrams)))
        return analyzers

    def vectorize(self, docs: list[str]) -> sp.csr_matrix:
        """Sparse float32 features of lower-cased documents: hashed n-gram counts, each row scaled to
        unit L2 norm (what `HashingVectorizer(alternate_sign=False)` computes, minus its per-call
        validation, which costs more than the hashing for one listing). Parallel over chunks for
        large inputs."""
        if len(docs) < PARALLEL_MIN_DOCS or effective_n_jobs(self.n_jobs) == 1:
            return self._vectorize_chunk(docs)
        jobs = effective_n_jobs(self.n_jobs)
        step = -(-len(docs) // (jobs * 4))
        chunks = Parallel(n_jobs=jobs)(
            delayed(self._vectorize_chunk)(docs[i : i + step]) for i in range(0, len(docs), step)
        )
        return sp.vstack(chunks, format="csr")

    def _hasher(self) -> FeatureHasher:
        return FeatureHasher(n_features=self.n_features, input_type="string", alternate_sign=False, dtype=np.float32)

    def vectorize_per_document(self, docs: list[str]) -> sp.csr_matrix:
        """`vectorize` one document at a time with sklearn's analyzers and `FeatureHasher`: the
        reference that the faster paths match bit for bit."""
        if not docs:
            return sp.csr_matrix((0, self.width), dtype=np.float32)
        docs = [_without_policy_terms(doc) for doc in docs]
        hasher = self._hasher()
        parts = [sp.csr_matrix(hasher.transform(analyze(doc) for doc in docs)) for analyze in self._analyzers()]
        return _l2_normalize_rows(parts[0] if len(parts) == 1 else sp.hstack(parts, format="csr"))

    def _vectorize_chunk(self, docs: list[str]) -> sp.csr_matrix:
        if not docs:
            return self.vectorize_per_document(docs)
        if len(docs) > VECTORISED_BLOCK_DOCS:
            step = VECTORISED_BLOCK_DOCS
            blocks = [self._vectorize_chunk(docs[i : i + step]) for i in range(0, len(docs), step)]
            return sp.vstack(blocks, format="csr")
        if len(docs) >= VECTORISED_MIN_DOCS and self.ngram_range[0] >= 1:
            return _l2_normalize_rows(self._counts_vectorised(docs))
        if len(docs) <= PER_NGRAM_HASH_MAX_DOCS or self.char_ngrams is not None:
            return _l2_normalize_rows(self._counts_few(docs))
        return self.vectorize_per_document(docs)

    def _ngrams_per_document(
        self, docs: list[str], analyzers: list[Callable[[str], list[str]]] | None = None
    ) -> sp.csr_matrix:
        """N-gram counts of documents with policy-owned terms removed, one document at a time:
        sklearn's analyzers (all of the model's, or the given first ones), and the hash `FeatureHasher`
        applies to each n-gram (see `_hashed_columns`); char n-grams are columns of the second block,
        as `hstack` puts them."""
        n_features = self.n_features
        analyzers = self._analyzers() if analyzers is None else analyzers
        columns = [
            [
                block * n_features + abs(murmurhash3_32(gram, seed=0)) % n_features
                for block, analyze in enumerate(analyzers)
                for gram in analyze(doc)
            ]
            for doc in docs
        ]
        rows = np.repeat(np.arange(len(docs)), [len(row) for row in columns])
        flat = np.fromiter(chain.from_iterable(columns), dtype=np.int64, count=len(rows))
        return _counts(rows, flat, len(docs), n_features * len(analyzers))

    def _counts_few(self, docs: list[str]) -> sp.csr_matrix:
        """`_ngrams_per_document` for a few documents, where numpy's fixed costs would not pay: word
        n-grams hashed one by one (up to PER_NGRAM_HASH_MAX_DOCS documents, else by `FeatureHasher`);
        char n-grams put together from each word's, which `_char_grams_of` keeps for recent words."""
        docs = [_without_policy_terms(doc) for doc in docs]
        if self.char_ngrams is None:
            return self._ngrams_per_document(docs)
        fast = np.asarray([i for i, doc in enumerate(docs) if doc.isascii()], dtype=np.int64)
        fast_docs = [docs[i] for i in fast]
        if len(fast_docs) <= PER_NGRAM_HASH_MAX_DOCS:
            words = self._ngrams_per_document(fast_docs, self._analyzers()[:1])
        else:
            analyze = self._analyzers()[0]
            words = self._hasher().transform(analyze(doc) for doc in fast_docs)
        split = [doc.split() for doc in fast_docs]
        grams = _char_grams_of(tuple(self.char_ngrams), self.n_features)(list(chain.from_iterable(split)))
        word_docs = np.repeat(np.arange(len(fast_docs)), [len(words) for words in split])
        rows = np.repeat(word_docs, [len(columns) for columns in grams])
        chars = _counts(rows, np.concatenate([_NO_COLUMNS, *grams]), len(fast_docs), self.n_features)
        return self._with_the_rest(fast, sp.hstack([words, chars], format="csr"), docs, terms_removed=True)

    def _counts_vectorised(self, docs: list[str]) -> sp.csr_matrix:
        """`_ngrams_per_document`, vectorised over the ASCII documents (policy-owned terms removed here)."""
        array = pa.array(docs, type=pa.large_string())
        fast = np.flatnonzero(pc.string_is_ascii(array).to_numpy(zero_copy_only=False))
        if len(fast) < len(docs):
            array = array.take(fast)
        fast_docs = _without_policy_terms_batch([docs[i] for i in fast] if len(fast) < len(docs) else docs, array)
        rows, columns = _hashed_word_ngrams(fast_docs, self.ngram_range, self.n_features)
        counts = _counts(rows, columns, len(fast), self.n_features)
        if self.char_ngrams is not None:
            chars = _hashed_char_wb_ngrams(fast_docs, self.char_ngrams, self.n_features)
            counts = sp.hstack([counts, chars], format="csr")
        if len(fast) == len(docs):
            return counts
        return self._with_the_rest(fast, counts, docs, terms_removed=False)

    def _with_the_rest(
        self, fast: np.ndarray, counts: sp.csr_matrix, docs: list[str], *, terms_removed: bool
    ) -> sp.csr_matrix:
        """The counts of all `docs` from those of the documents `fast` (ASCII) and, one at a time with
        sklearn's Unicode rules, of the others (policy-owned terms removed here unless `terms_removed`)."""
        if len(fast) == len(docs):
            return counts
        slow = np.setdiff1d(np.arange(len(docs)), fast)
        rest = [docs[i] if terms_removed else _without_policy_terms(docs[i]) for i in slow]
        stacked = sp.vstack([counts, self._ngrams_per_document(rest)], format="csr")
        return stacked[np.argsort(np.concatenate([fast, slow]))]

    @property
    def width(self) -> int:
        return self.n_features * (1 if self.char_ngrams is None else 2)

    # --- fitting -----------------------------------------------------------------------------------
    def fit_oof(self, X: sp.csr_matrix, y: np.ndarray) -> np.ndarray:
        """Out-of-fold scores for the training rows; then fit the final weights on all of them."""
        y = np.asarray(y, dtype=np.int64)
        fold = np.random.default_rng(self.seed).permutation(len(y)) % self.folds
        jobs = min(effective_n_jobs(self.n_jobs), self.folds + 1)
        fits = Parallel(n_jobs=jobs, prefer="threads")(
            delayed(self._fit_weights)(X[fold != k] if k >= 0 else X, y[fold != k] if k >= 0 else y)
            for k in [*range(self.folds), -1]
        )
        oof = np.empty(len(y), dtype=np.float64)
        for k in range(self.folds):
            coef, intercept = fits[k]
            oof[fold == k] = _linear(X[fold == k], coef, intercept)
        self.coef, self.intercept = fits[-1]
        return oof

    def _fit_weights(self, X: sp.csr_matrix, y: np.ndarray) -> tuple[np.ndarray, float]:
        if len(np.unique(y)) < 2:  # a fold with one class: a constant score at that class's log-odds
            return np.zeros(X.shape[1]), float(np.sign(y.mean() - 0.5) * 10 if len(y) else 0.0)
        # tol=None: exactly max_iter epochs, a deliberate budget (and no ConvergenceWarning)
        model = SGDClassifier(
            loss="log_loss", alpha=self.alpha, max_iter=self.max_iter, tol=None, random_state=self.seed
        )
        model.fit(X, y)
        return model.coef_.ravel().astype(np.float64), float(model.intercept_[0])

    # --- scoring -----------------------------------------------------------------------------------
    def score(self, X: sp.csr_matrix) -> np.ndarray:
        """Decision score (log-odds) with the weights fitted on all training rows."""
        if self.coef.shape[0] != X.shape[1]:
            raise RuntimeError("text model is not fitted (call fit_oof first, or load a saved state)")
        return _linear(X, self.coef, self.intercept)

    def score_documents(self, docs: list[str]) -> np.ndarray:
        """`score(vectorize(docs))`, block by block where `vectorize` would stack the blocks' matrices
        (a row's score is the sum of its own terms, so the numbers are the same): stacking them cost
        about 3% of scoring a listing offline (bench bundle, 100k rows)."""
        if len(docs) <= VECTORISED_BLOCK_DOCS or (len(docs) >= PARALLEL_MIN_DOCS and effective_n_jobs(self.n_jobs) > 1):
            return self.score(self.vectorize(docs))
        step = VECTORISED_BLOCK_DOCS
        return np.concatenate(
            [self.score(self._vectorize_chunk(docs[i : i + step])) for i in range(0, len(docs), step)]
        )

    # --- persistence -------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """JSON-safe parameters (the weights are saved separately as .npy)."""
        return {
            "n_features": self.n_features,
            "ngram_range": list(self.ngram_range),
            "char_ngrams": list(self.char_ngrams) if self.char_ngrams else None,
            "alpha": self.alpha,
            "max_iter": self.max_iter,
            "folds": self.folds,
            "seed": self.seed,
            "intercept": self.intercept,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any], coef: np.ndarray) -> TextModel:
        char = params.get("char_ngrams")
        return cls(
            n_features=int(params["n_features"]),
            ngram_range=tuple(params["ngram_range"]),
            char_ngrams=tuple(char) if char else None,
            alpha=float(params["alpha"]),
            max_iter=int(params["max_iter"]),
            folds=int(params["folds"]),
            seed=int(params["seed"]),
            coef=np.asarray(coef, dtype=np.float64),
            intercept=float(params["intercept"]),
        )


# --- vectorised word n-grams --------------------------------------------------------------------------
# Bytes that Python's `\w` matches in ASCII text; sklearn's token pattern `(?u)\b\w\w+\b` makes each
# maximal run of them, two or more long, a token.
_SPACE_FOR_NON_WORD = np.full(256, ord(" "), dtype=np.uint8)
_SPACE_FOR_NON_WORD[lexicon.WORD_BYTES] = lexicon.WORD_BYTES


def _without_policy_terms_batch(docs: list[str], array: pa.Array) -> pa.Array:
    """`_without_policy_terms` of ASCII documents (`array` holds `docs`). One RE2 pass finds the few
    documents with a policy-owned term (lexicon's patterns match alike in RE2 and Python `re`), and
    the Python pattern rewrites just those: RE2's replace kernel would take twice as long as its
    match kernel only to compile the long pattern."""
    has_term = pc.match_substring_regex(array, pattern=lexicon.term_pattern(POLICY_OWNED_TERMS))
    found = np.flatnonzero(has_term.to_numpy(zero_copy_only=False))
    if not len(found):
        return array
    docs = list(docs)
    for i in found.tolist():
        docs[i] = _without_policy_terms(docs[i])
    return pa.array(docs, type=pa.large_string())


def _hashed_word_ngrams(docs: pa.Array, ngram_range: tuple[int, int], n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Document row and hashed column of every word n-gram of ASCII documents (policy-owned terms
    already removed), as `_word_ngrams_per_document` finds them: tokens are runs of 2+ word
    characters, n-grams are consecutive tokens joined by a space. Each distinct n-gram is hashed once."""
    pieces = pc.ascii_split_whitespace(_non_word_to_space(docs))
    tokens = pc.list_flatten(pieces)
    is_token = pc.greater_equal(pc.binary_length(tokens), 2)
    tokens = tokens.filter(is_token)
    token_rows = pc.list_parent_indices(pieces).filter(is_token).to_numpy().astype(np.int64)
    encoded = pc.dictionary_encode(tokens)
    token_ids = encoded.indices.to_numpy().astype(np.int64)
    vocabulary_size = len(encoded.dictionary)
    min_n, max_n = ngram_range
    rows, columns = [], []
    if min_n == 1:
        rows.append(token_rows)
        columns.append(_hashed_columns(encoded.dictionary, n_features)[token_ids])
    starts, codes = np.arange(len(token_ids)), token_ids  # codes: a dense id of the n-gram at each start
    for n in range(2, max_n + 1):
        # extend each (n-1)-gram by the token after it, where there is one in the same document
        fits = np.searchsorted(starts, len(token_ids) - n + 1)
        starts, codes = starts[:fits], codes[:fits]
        inside = token_rows[starts + n - 1] == token_rows[starts]
        starts, codes = starts[inside], codes[inside]
        # a hash table, not np.unique's sort: the ids only need to be dense, not ordered
        codes, distinct = pd.factorize(codes * vocabulary_size + token_ids[starts + n - 1])
        codes = codes.astype(np.int64, copy=False)
        if n < min_n:
            continue
        example = np.empty(len(distinct), dtype=np.int64)
        example[codes] = starts  # one window of each distinct n-gram
        words = [tokens.take(example + i) for i in range(n)]
        grams = pc.binary_join_element_wise(*words, pa.scalar(" ", pa.large_string()))
        rows.append(token_rows[starts])
        columns.append(_hashed_columns(grams, n_features)[codes])
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(columns)


# --- vectorised char n-grams ------------------------------------------------------------------------
# ASCII bytes that Python's `str.split()` splits on (sklearn's char_wb analyzer splits words that way)
_WHITESPACE = np.frombuffer(b" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f", dtype=np.uint8)
_SPACE_FOR_WHITESPACE = np.arange(256, dtype=np.uint8)
_SPACE_FOR_WHITESPACE[_WHITESPACE] = ord(" ")


def _hashed_char_wb_ngrams(docs: pa.Array, ngram_range: tuple[int, int], n_features: int) -> sp.csr_matrix:
    """Char_wb n-gram counts of ASCII documents (policy-owned terms already removed), as `FeatureHasher`
    makes them: words are split by `str.split()`'s ASCII whitespace in arrow and dictionary-encoded, so
    each distinct word's n-grams are made and hashed once (`_char_wb_counts`)."""
    pieces = pc.ascii_split_whitespace(lexicon.map_bytes(docs, _SPACE_FOR_WHITESPACE))
    words = pc.list_flatten(pieces)
    is_word = pc.greater(pc.binary_length(words), 0)
    encoded = pc.dictionary_encode(words.filter(is_word))
    return _char_wb_counts(
        encoded.dictionary,
        pc.list_parent_indices(pieces).filter(is_word).to_numpy(),
        encoded.indices.to_numpy(),
        len(docs),
        ngram_range,
        n_features,
    )


_NO_COLUMNS = np.zeros(0, dtype=np.int64)
CHAR_GRAM_CACHE_WORDS = 50_000  # words whose char n-gram columns `_char_grams_of` keeps (about 10 MB)


@lru_cache(maxsize=4)
def _char_grams_of(ngram_range: tuple[int, int], n_features: int) -> Callable[[list[str]], list[np.ndarray]]:
    """A function from ASCII words to each word's hashed char_wb n-gram columns, keeping those of recent
    words (a listing's words were mostly seen in earlier listings): the missing ones are made in one
    numpy pass (`_char_wb_ngrams_of_words`). Safe across threads: a lookup never depends on the cache
    keeping an entry."""
    cache: dict[str, np.ndarray] = {}

    def columns_of(words: list[str]) -> list[np.ndarray]:
        found = {word: cache.get(word) for word in words}
        missing = [word for word, columns in found.items() if columns is None]
        if missing:
            words_array = pa.array(missing, type=pa.large_string())
            gram_words, columns = _char_wb_ngrams_of_words(words_array, ngram_range, n_features)
            made = np.split(columns, np.cumsum(np.bincount(gram_words, minlength=len(missing)))[:-1])
            found.update(zip(missing, made, strict=True))
            if len(cache) + len(missing) > CHAR_GRAM_CACHE_WORDS:
                cache.clear()
            cache.update(zip(missing, made, strict=True))
        return [found[word] for word in words]  # type: ignore[misc]

    return columns_of


def _char_wb_counts(
    words: pa.Array,
    word_rows: np.ndarray,
    word_ids: np.ndarray,
    n_docs: int,
    ngram_range: tuple[int, int],
    n_features: int,
) -> sp.csr_matrix:
    """Char_wb n-gram counts of documents whose word occurrences are given (document `word_rows[j]` holds
    the distinct ASCII word `words[word_ids[j]]`): (word counts) @ (each word's n-gram counts), a
    sparse product that needs no sort of every n-gram occurrence."""
    gram_words, columns = _char_wb_ngrams_of_words(words, ngram_range, n_features)
    per_doc = sp.csr_matrix(
        (np.ones(len(word_ids), dtype=np.float32), (word_rows, word_ids)), shape=(n_docs, len(words))
    )
    per_word = sp.csr_matrix(
        (np.ones(len(columns), dtype=np.float32), (gram_words, columns)), shape=(len(words), n_features)
    )
    counts = sp.csr_matrix(per_doc @ per_word)
    counts.sort_indices()
    return counts


def _char_wb_ngrams_of_words(
    words: pa.Array, ngram_range: tuple[int, int], n_features: int
) -> tuple[np.ndarray, np.ndarray]:
    """(word, hashed column) of every char_wb n-gram of distinct ASCII words, grouped by word in word
    order, as sklearn's `_char_wb_ngrams` makes them: each word padded by a space on both sides (length
    L); for each n from the smallest, the L - n + 1 windows of n characters, except that a padded word
    no longer than n is one n-gram (itself) and ends that word's n-grams."""
    offsets, data = lexicon.string_buffers(words)
    lengths = np.diff(offsets) + 2  # padded
    starts = np.cumsum(lengths) - lengths
    padded = np.full(int(lengths.sum()), ord(" "), dtype=np.uint8)
    padded[np.repeat(starts + 1 - offsets[:-1], lengths - 2) + np.arange(len(data))] = data
    min_n, max_n = ngram_range
    word_of_gram, gram_starts, gram_lengths = [], [], []
    for n in range(min_n, max_n + 1):
        # a word takes part at n if no smaller n ended it (it ended at n - 1 when L <= n - 1)
        count = np.maximum(lengths - n + 1, 1) * ((lengths >= n) | (n == min_n))
        first = np.cumsum(count) - count
        word = np.repeat(np.arange(len(lengths)), count)
        word_of_gram.append(word)
        gram_starts.append(starts[word] + np.arange(len(word)) - first[word])
        gram_lengths.append(np.minimum(lengths, n)[word])
    word = np.concatenate(word_of_gram)
    order = np.argsort(word, kind="stable")
    hashes = _murmurhash3_32(padded, np.concatenate(gram_starts)[order], np.concatenate(gram_lengths)[order])
    return word[order], np.abs(hashes.astype(np.int64)) % n_features


def _non_word_to_space(docs: pa.Array) -> pa.Array:
    return lexicon.map_bytes(docs, _SPACE_FOR_NON_WORD)


def _hashed_columns(strings: pa.Array, n_features: int) -> np.ndarray:
    """`FeatureHasher`'s column of each string: abs(murmurhash3_32(UTF-8 bytes, seed=0)) % n_features."""
    offsets, data = lexicon.string_buffers(strings)
    hashes = _murmurhash3_32(data, offsets[:-1], np.diff(offsets))
    return np.abs(hashes.astype(np.int64)) % n_features


_C1, _C2 = np.uint32(0xCC9E2D51), np.uint32(0x1B873593)
_TAIL_MASKS = np.array([0, 0xFF, 0xFFFF, 0xFFFFFF], dtype=np.uint32)


def _murmurhash3_32(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Signed MurmurHash3 (x86, 32 bit, seed 0) of each byte string data[start : start + length]:
    `sklearn.utils.murmurhash3_32(..., seed=0)`, vectorised over the strings. Block j of every string
    is mixed in one numpy step; strings are ordered longest first, so the ones with a block j form a
    prefix."""
    padded = np.zeros(len(data) + 4, dtype=np.uint32)
    padded[: len(data)] = data
    # the little-endian 4-byte word starting at each byte
    words = padded[:-3] | (padded[1:-2] << 8) | (padded[2:-1] << 16) | (padded[3:] << 24)
    blocks = lengths // 4
    order = np.argsort(-blocks, kind="stable")
    starts, lengths, blocks = starts[order], lengths[order], blocks[order]
    h = np.zeros(len(starts), dtype=np.uint32)
    with_block = np.searchsorted(-blocks, -np.arange(int(blocks[0]) if len(blocks) else 0), side="left")
    for j, count in enumerate(with_block.tolist()):
        head = h[:count]
        head ^= _scrambled(words[starts[:count] + 4 * j])
        head[:] = _rotl(head, 13) * np.uint32(5) + np.uint32(0xE6546B64)
    tail = lengths & 3
    h ^= np.where(tail > 0, _scrambled(words[starts + 4 * blocks] & _TAIL_MASKS[tail]), np.uint32(0))
    h ^= lengths.astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    hashes = np.empty(len(h), dtype=np.int32)
    hashes[order] = h.view(np.int32)
    return hashes


def _scrambled(k: np.ndarray) -> np.ndarray:
    return _rotl(k * _C1, 15) * _C2


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _counts(rows: np.ndarray, columns: np.ndarray, n_rows: int, n_columns: int) -> sp.csr_matrix:
    """Float32 counts of (row, column) pairs: a CSR matrix with sorted indices, as `FeatureHasher`
    makes it (its counts are sums of 1.0 in float32: exact, in any order)."""
    # np.unique's own sort is several times slower than a stable (radix/merge) sort on these keys, which
    # arrive in runs ordered by row
    keys = np.sort(rows * n_columns + columns, kind="stable")
    first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])) if len(keys) else _NO_COLUMNS
    counts = np.diff(np.append(first, len(keys)))
    return _csr_from_keys(keys[first], counts.astype(np.float32), n_rows, n_columns)


def _csr_from_keys(keys: np.ndarray, values: np.ndarray, n_rows: int, n_columns: int) -> sp.csr_matrix:
    """CSR matrix from sorted, distinct keys row * n_columns + column and their values; int32 indices
    where they fit, as `FeatureHasher` makes them (and scipy builds those twice as fast)."""
    index_dtype = np.int32 if max(len(keys), n_columns) <= np.iinfo(np.int32).max else np.int64
    indptr = np.searchsorted(keys, np.arange(n_rows + 1, dtype=np.int64) * n_columns).astype(index_dtype)
    indices = (keys % n_columns).astype(index_dtype)
    return sp.csr_matrix((values, indices, indptr), shape=(n_rows, n_columns))


def _l2_normalize_rows(X: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row to unit L2 norm (all-zero rows stay zero); same arithmetic for 1 row or 1M."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    norms = np.sqrt(np.bincount(rows, weights=X.data.astype(np.float64) ** 2, minlength=X.shape[0]))
    norms[norms == 0] = 1.0
    X.data = (X.data / norms[rows]).astype(np.float32)
    return X


def _linear(X: sp.csr_matrix, coef: np.ndarray, intercept: float) -> np.ndarray:
    return np.asarray(X @ coef, dtype=np.float64) + intercept
