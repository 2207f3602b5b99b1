"""Text vectorising: every fast path gives the per-document reference's matrix bit for bit, so bundles
trained before keep scoring the same and training and serving agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp
from sklearn.utils import murmurhash3_32

import features.text as text_module
from features import lexicon
from features.text import PER_NGRAM_HASH_MAX_DOCS, VECTORISED_MIN_DOCS, TextModel, documents
from training.generate import generate

EDGE_CASES = [
    "",
    " ",
    "a",
    "ab",
    "a b c d",
    "x yy z ww",
    "Crème brûlée ÄÖÜ café",
    "crème brûlée äöü café",
    "Mixed CASE Words",
    "12 345 6789 1 2 3",
    "a1 b2 3c 4d5",
    "snake_case _under_ __ ___",
    "!!! ... --- ???",
    "  multiple   spaces\n\nnew\nlines\t\ttabs\r\n\x0bvertical\x0cfeed  ",
    "switchblade,",
    "a switchblade, b",
    "a taser-b",
    "tasers taser xtaser taserx",
    "stun  gun stun\tgun stun\ngun",
    "brass ivory knuckles",  # removing 'ivory' joins a second term: the reference removes terms once
    "cures cancer, cures  diabetes and no side effects",
    "lose weight fast!lose weight fast",
    "kelvin \u212a sign",
    "ﬁne ligature",
    "日本語 テキスト ok",
    "emoji 🙂 ok",
    "\x00nul\x00 bytes\x00",
    "ivory " * 2000 + "end",
    "word" * 5000,
    " ".join(f"tok{i}" for i in range(3000)),
]


@pytest.fixture(scope="module")
def docs() -> list[str]:
    """Generated listings' documents with the edge cases spread through them."""
    reviews, _ = generate(3000, seed=11)
    generated = documents(reviews, ("title", "description", "brand"))
    mixed = list(generated)
    for k, case in enumerate(EDGE_CASES):
        mixed.insert(97 * k + 3, case)
    return mixed


@pytest.fixture(scope="module")
def model() -> TextModel:
    fitted = TextModel()
    fitted.coef = np.random.default_rng(0).normal(size=fitted.width)
    return fitted


def assert_same_matrix(actual: sp.csr_matrix, expected: sp.csr_matrix) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype == np.float32
    assert actual.indices.dtype == expected.indices.dtype
    assert actual.indptr.dtype == expected.indptr.dtype
    np.testing.assert_array_equal(actual.indptr, expected.indptr)
    np.testing.assert_array_equal(actual.indices, expected.indices)
    np.testing.assert_array_equal(actual.data.view(np.uint32), expected.data.view(np.uint32))
    rows = slice(0, 64)  # dense rows are 2**18 wide: compare a few of them as arrays
    np.testing.assert_array_equal(actual[rows].toarray(), expected[rows].toarray())


def test_murmurhash_matches_sklearn():
    rng = np.random.default_rng(1)
    alphabet = [*"abcdefghijklmnopqrstuvwxyz0123456789_ -", "é", "ß", "日", "🙂", "\x00"]
    strings = ["".join(rng.choice(alphabet, size=rng.integers(0, 70))) for _ in range(3000)]
    array = pa.array(["skipped", *strings], type=pa.large_string()).slice(1)  # a non-zero array offset
    offsets, data = lexicon.string_buffers(array)
    hashes = text_module._murmurhash3_32(data, offsets[:-1], np.diff(offsets))
    np.testing.assert_array_equal(hashes, [murmurhash3_32(s, seed=0) for s in strings])
    columns = text_module._hashed_columns(array, 2**18)
    np.testing.assert_array_equal(columns, [abs(murmurhash3_32(s, seed=0)) % 2**18 for s in strings])


@pytest.mark.parametrize(
    "size", [1, PER_NGRAM_HASH_MAX_DOCS, PER_NGRAM_HASH_MAX_DOCS + 1, VECTORISED_MIN_DOCS, 1000, None]
)
def test_vectorize_equals_the_per_document_reference(docs, model, size):
    batch = docs if size is None else docs[:size]
    expected = model.vectorize_per_document(batch)
    actual = model.vectorize(batch)
    assert_same_matrix(actual, expected)
    np.testing.assert_array_equal(model.score(actual), model.score(expected))


@pytest.mark.parametrize("case", EDGE_CASES)
def test_each_edge_case_alone_and_in_a_batch(model, case):
    for batch in (
        [case],
        [case] * VECTORISED_MIN_DOCS,
        ["plain words here", case, "more plain words"] * VECTORISED_MIN_DOCS,
    ):
        assert_same_matrix(model.vectorize(batch), model.vectorize_per_document(batch))


@pytest.mark.parametrize("ngram_range", [(1, 1), (2, 2), (1, 3), (2, 3), (3, 3)])
def test_other_ngram_ranges_with_hash_collisions(docs, ngram_range):
    model = TextModel(n_features=2**8, ngram_range=ngram_range)  # small: many n-grams share a column
    for batch in (docs[:400], docs[:PER_NGRAM_HASH_MAX_DOCS]):
        assert_same_matrix(model.vectorize(batch), model.vectorize_per_document(batch))


def test_large_inputs_in_blocks_and_in_parallel(docs, model, monkeypatch):
    expected = model.vectorize_per_document(docs)
    monkeypatch.setattr(text_module, "VECTORISED_BLOCK_DOCS", 100)
    assert_same_matrix(model.vectorize(docs), expected)
    monkeypatch.setattr(text_module, "PARALLEL_MIN_DOCS", 10)
    parallel = TextModel(n_jobs=2, coef=model.coef)
    assert_same_matrix(parallel.vectorize(docs), expected)


def test_scoring_documents_block_by_block_equals_scoring_the_stacked_matrix(docs, model, monkeypatch):
    monkeypatch.setattr(text_module, "VECTORISED_BLOCK_DOCS", 100)
    assert len(docs) > 100
    np.testing.assert_array_equal(model.score_documents(docs), model.score(model.vectorize(docs)))
    np.testing.assert_array_equal(model.score_documents(docs[:7]), model.score(model.vectorize(docs[:7])))


@pytest.mark.parametrize("char_ngrams", [(2, 5), (3, 4), (1, 1), (1, 3), (5, 5)])
def test_char_ngrams_equal_the_reference_at_every_batch_size(docs, char_ngrams):
    model = TextModel(n_features=2**10, char_ngrams=char_ngrams)  # small: many n-grams share a column
    few = PER_NGRAM_HASH_MAX_DOCS
    for size in (1, few, few + 1, VECTORISED_MIN_DOCS - 1, VECTORISED_MIN_DOCS, None):
        batch = docs if size is None else docs[:size]
        X = model.vectorize(batch)
        assert X.shape == (len(batch), 2 * 2**10) and X[:, 2**10 :].nnz > 0
        assert_same_matrix(X, model.vectorize_per_document(batch))


@pytest.mark.parametrize("case", EDGE_CASES)
def test_char_ngrams_of_each_edge_case_alone_and_in_a_batch(case):
    model = TextModel(n_features=2**12, char_ngrams=(2, 5))
    for batch in ([case], [case] * 7, ["plain words here", case, "more plain words"] * VECTORISED_MIN_DOCS):
        assert_same_matrix(model.vectorize(batch), model.vectorize_per_document(batch))


def test_char_ngram_columns_kept_for_recent_words_are_the_same_when_the_cache_is_full(docs, monkeypatch):
    model = TextModel(n_features=2**12, char_ngrams=(2, 5))
    expected = model.vectorize_per_document(docs[:200])
    monkeypatch.setattr(text_module, "CHAR_GRAM_CACHE_WORDS", 50)  # cleared again and again
    for lo in range(0, 200, 5):
        assert_same_matrix(model.vectorize(docs[lo : lo + 5]), expected[lo : lo + 5])


def test_documents_join_and_lower_case_as_python_does() -> None:
    """ASCII columns are joined and lower-cased in arrow; any other text as Python's `str.lower`."""
    frame = pd.DataFrame(
        {
            "title": ["Ab CD", None, "ÀÉ x", np.nan, "İstanbul", "Plain"],
            "price": [1.5, None, 2.0, 3.0, 4.0, 5.0],  # not text: read as its string
            "brand": pd.Series(["X", None, None, "y", "ẞ", "Z"], dtype="string"),
        }
    )

    def reference(rows: pd.DataFrame, columns: list[str]) -> list[str]:
        joined = rows[columns[0]].fillna("").astype("str")
        for column in columns[1:]:
            joined = joined + " " + rows[column].fillna("").astype("str")
        return [doc.lower() for doc in joined.tolist()]

    for columns in (["title"], ["title", "price", "brand"], ["brand", "title"]):
        for rows in (frame, frame.iloc[:2], frame.iloc[5:], frame.iloc[:0]):  # Unicode in some, none in others
            assert documents(rows, columns) == reference(rows, columns)
    assert documents(frame, ["title", "brand"])[:2] == ["ab cd x", " "]
    assert documents(frame, []) == [""] * len(frame)
