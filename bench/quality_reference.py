"""The independent scikit-learn reference of `make bench-quality`: what an off-the-shelf model reaches.

Two parts, each fitted only on the rows it is given (the training part of the pipeline's split):
- tabular: HistGradientBoostingClassifier on the categorical (native) and numeric columns;
- text: TF-IDF (word 1-2 grams + char_wb 2-5 grams, sublinear tf) + LogisticRegression on the text
  columns joined into one string.
Blend: the average of the two parts' probabilities, w * text + (1 - w) * tabular, with w chosen by ROC-AUC
on an inner validation slice (the newest 20% of the given rows, which must come in time order) after
fitting both parts on the older 80%; both parts are then refitted on all given rows. The TF-IDF
vocabulary and idf are fitted once, on all given rows (no labels involved), for both fits. Text-only data
uses the text part alone, data without text the tabular part alone. No merchant history: the reference
sees only the listing's own columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import FeatureUnion, make_union
from threadpoolctl import threadpool_limits

INNER_VALIDATION_FRACTION = 0.2
BLEND_WEIGHTS = np.round(np.linspace(0.0, 1.0, 11), 2)
MAX_CATEGORIES = 250  # HistGradientBoosting's native categoricals take at most max_bins (255) levels
TEXT_C = 4.0
MULTITHREAD_MIN_ROWS = 100_000  # below this, OpenMP threads cost more than they gain (as in training)


@dataclass(frozen=True)
class Columns:
    text: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()

    @property
    def tabular(self) -> tuple[str, ...]:
        return (*self.categorical, *self.numeric)


@dataclass
class Reference:
    columns: Columns
    text_weight: float  # w in w * text + (1 - w) * tabular
    vectorizer: FeatureUnion | None
    text_model: LogisticRegression | None
    tabular_model: HistGradientBoostingClassifier | None
    levels: dict[str, list[str]]  # categories the tabular part knows, per categorical column

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of rejection for each row of `frame`."""
        risk = np.zeros(len(frame))
        if self.text_weight > 0:
            risk += self.text_weight * self.text_risk(frame)
        if self.text_weight < 1:
            risk += (1 - self.text_weight) * self.tabular_risk(frame)
        return risk

    def text_risk(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.vectorizer is not None and self.text_model is not None, "fitted without text columns"
        return self.text_model.predict_proba(self.vectorizer.transform(joined_text(frame, self.columns.text)))[:, 1]

    def tabular_risk(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.tabular_model is not None, "fitted without tabular columns"
        return self.tabular_model.predict_proba(tabular_frame(frame, self.columns, self.levels))[:, 1]


def joined_text(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    parts = [frame[column].fillna("").astype(str) for column in columns]
    return parts[0].str.cat(parts[1:], sep=" ") if len(parts) > 1 else parts[0]


def category_levels(frame: pd.DataFrame, columns: Columns) -> dict[str, list[str]]:
    """The most frequent levels of each categorical column (rarer ones are treated as missing)."""
    return {
        column: frame[column].astype(str).value_counts().index[:MAX_CATEGORIES].tolist()
        for column in columns.categorical
    }


def tabular_frame(frame: pd.DataFrame, columns: Columns, levels: dict[str, list[str]]) -> pd.DataFrame:
    out = {
        column: pd.Categorical(frame[column].astype(str), categories=levels[column]) for column in columns.categorical
    }
    out.update({column: pd.to_numeric(frame[column], errors="coerce").astype(float) for column in columns.numeric})
    return pd.DataFrame(out, index=frame.index)


def fit_vectorizer(texts: pd.Series) -> tuple[FeatureUnion, Any]:
    """TF-IDF word 1-2 grams + char_wb 2-5 grams, and the matrix of `texts`."""
    vectorizer = make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
    )
    return vectorizer, vectorizer.fit_transform(texts)


def fit_text(words: Any, y: np.ndarray, seed: int) -> LogisticRegression:
    return LogisticRegression(C=TEXT_C, max_iter=2000, random_state=seed).fit(words, y)


def fit_tabular(frame: pd.DataFrame, y: np.ndarray, seed: int) -> HistGradientBoostingClassifier:
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", learning_rate=0.05, max_iter=500, early_stopping=True, random_state=seed
    )
    with threadpool_limits(1 if len(frame) < MULTITHREAD_MIN_ROWS else None):
        return model.fit(frame, y)


def _fit_parts(
    frame: pd.DataFrame, y: np.ndarray, columns: Columns, vectorizer: FeatureUnion | None, words: Any, seed: int
) -> Reference:
    levels = category_levels(frame, columns)
    text = fit_text(words, y, seed) if vectorizer is not None else None
    tabular = fit_tabular(tabular_frame(frame, columns, levels), y, seed) if columns.tabular else None
    weight = 1.0 if tabular is None else 0.0 if text is None else 0.5
    return Reference(columns, weight, vectorizer, text, tabular, levels)


def choose_text_weight(parts: Reference, validation: pd.DataFrame, y: np.ndarray) -> float:
    """The blend weight with the best ROC-AUC on the validation rows (ties: the lower weight)."""
    if parts.text_model is None or parts.tabular_model is None or y.min() == y.max():
        return parts.text_weight
    text, tabular = parts.text_risk(validation), parts.tabular_risk(validation)
    aucs = [roc_auc_score(y, w * text + (1 - w) * tabular) for w in BLEND_WEIGHTS]
    return float(BLEND_WEIGHTS[int(np.argmax(aucs))])


def fit_reference(frame: pd.DataFrame, y: np.ndarray, columns: Columns, seed: int = 0) -> Reference:
    """Fit the reference on `frame` (rows in time order) and labels `y` (1 = rejected)."""
    y = np.asarray(y, dtype=np.int64)
    vectorizer, words = fit_vectorizer(joined_text(frame, columns.text)) if columns.text else (None, None)
    cut = int(len(frame) * (1 - INNER_VALIDATION_FRACTION))
    inner_words = words[:cut] if words is not None else None
    inner = _fit_parts(frame.iloc[:cut], y[:cut], columns, vectorizer, inner_words, seed)
    weight = choose_text_weight(inner, frame.iloc[cut:], y[cut:])
    final = _fit_parts(frame, y, columns, vectorizer, words, seed)
    final.text_weight = weight
    return final
