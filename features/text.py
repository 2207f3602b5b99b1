"""Text risk score: hashed word uni+bi-grams -> a linear model whose decision score is one feature.

On the training rows the score is out-of-fold (k seeded folds): each row is scored by a model that
never saw it, so the downstream model does not learn to trust an overfit score. `fit` on all training
rows gives the weights used for every other row (calibration, test, serving).

The state is plain data (vectorizer parameters as JSON, the weights as one float64 array), so a
bundle needs no pickle; `HashingVectorizer` is stateless, so rebuilding it from the parameters gives
the same features. Vectorising is the one step of feature building that runs Python per document
(about 15-40 us each, depending on machine load), so large inputs are split across processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.feature_extraction import FeatureHasher
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier

from features import lexicon

PARALLEL_MIN_DOCS = 50_000  # below this, worker start-up costs more than it saves


# Phrases whose signal belongs to the monotone lexicon-count features, not to the text model: the text
# model cuts them out of every document before hashing, so adding a prohibited term to a listing moves only its
# (monotone) hit count, and the text model spends its capacity on what the lists miss (obfuscated
# spellings, new schemes).
POLICY_OWNED_TERMS: tuple[str, ...] = (*lexicon.PROHIBITED_TERMS, *lexicon.HEALTH_CLAIM_PHRASES)


def _without_policy_terms(doc: str) -> str:
    return lexicon.compile_terms(POLICY_OWNED_TERMS).sub(" ", doc)


def documents(frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> list[str]:
    """One lower-cased document per row: the text columns joined by a space (missing -> "")."""
    joined = frame[list(columns)[0]].fillna("").astype("str")
    for column in list(columns)[1:]:
        joined = joined + " " + frame[column].fillna("").astype("str")
    return [doc.lower() for doc in joined.tolist()]  # str.lower, exactly as `document_one`


def document_one(values: list[str]) -> str:
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
        """Tokenisers of `HashingVectorizer` (default token pattern: words of 2+ chars); documents
        arrive lower-cased already."""
        analyzers = [HashingVectorizer(ngram_range=tuple(self.ngram_range), lowercase=False).build_analyzer()]
        if self.char_ngrams is not None:
            char = HashingVectorizer(analyzer="char_wb", ngram_range=tuple(self.char_ngrams), lowercase=False)
            analyzers.append(char.build_analyzer())
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

    def _vectorize_chunk(self, docs: list[str]) -> sp.csr_matrix:
        if not docs:
            return sp.csr_matrix((0, self.width), dtype=np.float32)
        docs = [_without_policy_terms(doc) for doc in docs]
        hasher = FeatureHasher(n_features=self.n_features, input_type="string", alternate_sign=False, dtype=np.float32)
        parts = [sp.csr_matrix(hasher.transform(analyze(doc) for doc in docs)) for analyze in self._analyzers()]
        X = parts[0] if len(parts) == 1 else sp.hstack(parts, format="csr")
        return _l2_normalize_rows(X)

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


def _l2_normalize_rows(X: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row to unit L2 norm (all-zero rows stay zero); same arithmetic for 1 row or 1M."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    norms = np.sqrt(np.bincount(rows, weights=X.data.astype(np.float64) ** 2, minlength=X.shape[0]))
    norms[norms == 0] = 1.0
    X.data = (X.data / norms[rows]).astype(np.float32)
    return X


def _linear(X: sp.csr_matrix, coef: np.ndarray, intercept: float) -> np.ndarray:
    return np.asarray(X @ coef, dtype=np.float64) + intercept
