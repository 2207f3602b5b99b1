"""Model selection on an inner, time-ordered validation part carved from the training period.

The calibration and test splits are never looked at. The newest `validation_fraction` of the training
rows is held out; features are fitted on the older rows only (the text model out-of-fold, category
codes, price norms), and every candidate is scored on the held-out rows:

- LightGBM with early stopping (on the newest tenth of the rows it fits), its hyperparameters chosen by
  a seeded Optuna TPE search with a fixed number of trials (the default parameters are trial 0);
- the logistic-regression baseline;
- both with each feature group switched off (merchant history, text model, the char n-gram text
  score where the data is small enough to afford it, lexicon counts).

What the product sells is the review share needed at the target recall, so that is the criterion:
the share of validation rows scored at or above the score of the violation that reaching the target
recall requires (no slack, ties reviewed). A share at recall r rests on the (1 - r) tail of the
violations' scores; with fewer than MIN_TAIL_VIOLATIONS violations in that tail it is decided by one or
two listings, so on a small validation part the criterion uses the highest recall whose tail holds
that many (`criterion_recall`), and says so. Even then that share moves with a handful of
violations, so it is estimated by a paired bootstrap of the validation rows (the same resamples for
every candidate): candidates whose mean difference to the best is within one standard deviation of
that difference are tied (the one-standard-error rule: Hastie, Tibshirani & Friedman, *The Elements
of Statistical Learning*, 2nd ed., sec. 7.10), and PR-AUC breaks the tie.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from decision.alpha_split import Pilot
from features.builder import FeatureBuilder
from features.config import FEATURE_GROUPS, TEXT_CHARS, DataConfig
from training.evaluate import review_share_at_recall
from training.train import LgbmParams, fit_model

log = logging.getLogger(__name__)

LIGHTGBM, LOGISTIC = "lightgbm", "logistic_regression"
BOOTSTRAP_SAMPLES = 200
MIN_TAIL_VIOLATIONS = 10  # violations below the threshold the criterion's recall may leave out
MIN_CRITERION_RECALL = 0.5
MIN_VALIDATION_ROWS = 200


@dataclass(frozen=True)
class Candidate:
    kind: str  # LIGHTGBM | LOGISTIC
    groups: tuple[str, ...]  # feature groups switched on
    params: LgbmParams | None = None

    def name(self, all_groups: tuple[str, ...]) -> str:
        """e.g. `lightgbm`, `logistic_regression-no-merchant_history` (valid as an MLflow metric key)."""
        return self.kind + "".join(f"-no-{g}" for g in all_groups if g not in self.groups)


@dataclass
class Scored:
    candidate: Candidate
    name: str
    review_share: float  # at the target recall, bootstrap mean
    review_share_sd: float  # bootstrap sd of its difference to the winner (0 for the winner)
    pr_auc: float
    roc_auc: float
    replicates: np.ndarray = field(repr=False)
    score: np.ndarray | None = field(default=None, repr=False)  # the validation rows' predicted risk


@dataclass
class Selection:
    winner: Scored
    scored: list[Scored]
    reason: str
    recall: float  # the criterion's recall (see `criterion_recall`)
    target_recall: float
    validation_rows: int
    validation_violations: int
    search: dict[str, Any]
    # the validation rows as scored by the winner (and, tiered, each tier's source): plans how the
    # certification's confidence budget is split (`decision.alpha_split`); None when not planned
    pilot: Pilot | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        row = _row
        params = self.winner.candidate.params
        return {
            "criterion": f"review share at recall {self.recall:.4g} on validation (bootstrap mean), tie-break PR-AUC"
            + (
                f" (target {self.target_recall:g} needs more than {self.validation_violations} validation "
                f"violations to estimate)"
                if self.recall < self.target_recall
                else ""
            ),
            "criterion_recall": self.recall,
            "validation_rows": self.validation_rows,
            "validation_violations": self.validation_violations,
            "winner": {"name": self.winner.name}
            | row(self.winner)
            | {"lgbm_params": _params_dict(params) if params else None},
            "reason": self.reason,
            "candidates": {s.name: row(s) for s in self.scored},
            "search": self.search,
        }


def _row(s: Scored) -> dict[str, Any]:
    return {
        "kind": s.candidate.kind,
        "feature_groups": list(s.candidate.groups),
        "review_share_at_target_recall": s.review_share,
        "difference_sd": s.review_share_sd,
        "pr_auc": s.pr_auc,
        "roc_auc": s.roc_auc,
    }


def _params_dict(params: LgbmParams) -> dict[str, Any]:
    return {k: v for k, v in asdict(params).items() if k not in ("extra", "num_threads")}


def bootstrap_indices(n: int, seed: int, samples: int = BOOTSTRAP_SAMPLES) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def criterion_recall(target: float, n_violating: int) -> float:
    """The target recall, or the highest recall whose missed tail holds MIN_TAIL_VIOLATIONS violations."""
    resolvable = 1.0 - MIN_TAIL_VIOLATIONS / max(n_violating, 1)
    return float(min(target, max(resolvable, MIN_CRITERION_RECALL)))


def _replicates(label: np.ndarray, score: np.ndarray, recall: float, indices: np.ndarray) -> np.ndarray:
    return np.array([review_share_at_recall(label[i], score[i], recall) for i in indices])


def choose(scored: list[Scored]) -> tuple[Scored, str]:
    """The best by bootstrap-mean review share; within one sd of the paired difference, the best PR-AUC."""
    best = min(scored, key=lambda s: (s.review_share, -s.pr_auc))
    tied = []
    for s in scored:
        diff = s.replicates - best.replicates
        s.review_share_sd = float(np.nanstd(diff))
        if float(np.nanmean(diff)) <= s.review_share_sd:
            tied.append(s)
    winner = max(tied, key=lambda s: (s.pr_auc, -s.review_share))
    others = [s.name for s in tied if s is not winner]
    if winner is best and not others:
        reason = f"lowest review share ({winner.review_share:.4f}); no other candidate within one sd"
    elif winner is best:
        reason = (
            f"lowest review share ({winner.review_share:.4f}) and the best PR-AUC ({winner.pr_auc:.4f}) among "
            f"candidates within one sd of it ({', '.join(others)})"
        )
    else:
        reason = (
            f"review share {winner.review_share:.4f} is within one sd of the lowest ({best.name}, "
            f"{best.review_share:.4f}); best PR-AUC among those ({winner.pr_auc:.4f})"
        )
    return winner, reason


def can_hold_out(n: int, validation_fraction: float) -> bool:
    """Whether n training rows leave MIN_VALIDATION_ROWS both to fit on and to validate on."""
    return n - max(MIN_VALIDATION_ROWS, int(n * validation_fraction)) >= MIN_VALIDATION_ROWS


def inner_split(n: int, validation_fraction: float) -> int:
    """Index of the first validation row (rows are in time order)."""
    if not can_hold_out(n, validation_fraction):
        raise ValueError(
            f"model selection: {n} training rows are too few to hold out a validation part (it needs at least "
            f"{2 * MIN_VALIDATION_ROWS} training rows: {MIN_VALIDATION_ROWS} to fit on, {MIN_VALIDATION_ROWS} "
            "to validate on; the training rows are those older than the calibration and test splits, so the "
            "export needs about twice as many rows)"
        )
    return n - max(MIN_VALIDATION_ROWS, int(n * validation_fraction))


@dataclass
class SelectionData:
    """Features of the inner fit and validation parts, built with every feature group on."""

    X_fit: pd.DataFrame
    y_fit: np.ndarray
    X_valid: pd.DataFrame
    y_valid: np.ndarray
    categorical: list[str]
    group_columns: dict[str, list[str]]  # feature group -> its columns (groups without columns left out)


# The char n-gram text score is tried only up to this many training rows: above it, its vectorising
# cost (several times the word model's, in training and for every listing served) outweighs what it
# adds where word n-grams already have plenty of data.
CHAR_NGRAM_MAX_ROWS = 60_000


def starting_groups(config: DataConfig, n_rows: int, requested: tuple[str, ...] | None) -> frozenset[str]:
    """The feature groups selection starts from: the requested ones, else the data's defaults plus the
    char-gram text score where the data is small enough to afford it."""
    if requested is not None:
        return frozenset(requested)
    affordable = n_rows <= CHAR_NGRAM_MAX_ROWS and TEXT_CHARS in config.feature_groups
    return config.default_feature_groups | ({TEXT_CHARS} if affordable else set())


def selection_data(
    train: pd.DataFrame,
    history: pd.DataFrame | None,
    config: DataConfig,
    *,
    seed: int,
    validation_fraction: float,
    feature_groups: tuple[str, ...] | None = None,
    merchant: pd.DataFrame | None = None,
    snapshot: pd.DataFrame | None = None,
    train_rows: int | None = None,
) -> SelectionData:
    """Hold out the newest rows of the training part; build both parts' features from the older rows.

    Without `history`: `merchant` (the rows' point-in-time merchant features, row for row) and
    `snapshot` stand in for it (`FeatureBuilder.fit_transform`). `train_rows`: the size of the whole
    training part when `train` is its newest rows only (it decides the feature groups tried)."""
    cut = inner_split(len(train), validation_fraction)
    fit_rows, valid_rows = train.iloc[:cut], train.iloc[cut:]
    y_fit, y_valid = fit_rows[config.label].to_numpy(dtype=np.int64), valid_rows[config.label].to_numpy(dtype=np.int64)
    _require_both_labels(y_fit, "fit part (the older training rows)")
    _require_both_labels(y_valid, f"validation part (the newest {len(y_valid):,} training rows)")
    groups = starting_groups(config, train_rows or len(train), feature_groups)
    builder = FeatureBuilder(config, seed=seed, feature_groups=groups)
    fit_merchant, valid_merchant = (None, None) if merchant is None else (merchant.iloc[:cut], merchant.iloc[cut:])
    X_fit = builder.fit_transform(fit_rows, history=history, merchant=fit_merchant, snapshot=snapshot)
    X_valid = builder.transform(valid_rows, history=history, merchant=valid_merchant)
    group_columns = {}
    for group in FEATURE_GROUPS:
        if group in groups:
            without = set(FeatureBuilder(config, seed=seed, feature_groups=groups - {group}).feature_names)
            group_columns[group] = [c for c in builder.feature_names if c not in without]
    return SelectionData(
        X_fit=X_fit,
        y_fit=y_fit,
        X_valid=X_valid,
        y_valid=y_valid,
        categorical=list(builder.categorical_features),
        group_columns={g: c for g, c in group_columns.items() if c},
    )


def _require_both_labels(label: np.ndarray, part: str) -> None:
    """Models are fitted and compared only on rows holding both outcomes: say which one a part lacks."""
    rejected = int(label.sum())
    if 0 < rejected < len(label):
        return
    missing = "rejected" if rejected == 0 else "approved"
    raise ValueError(
        f"model selection: the {part} holds no {missing} listing (all {len(label):,} are "
        f"{'approved' if rejected == 0 else 'rejected'}), so models cannot be fitted or compared on it; the "
        f"export's {missing} listings all lie elsewhere in time. Train on an export whose {missing} listings "
        "span its time range (rows are split by time: oldest to train, newest to calibrate and test)"
    )


def _scored(
    candidate: Candidate, name: str, label: np.ndarray, score: np.ndarray, recall: float, indices: np.ndarray
) -> Scored:
    reps = _replicates(label, score, recall, indices)
    return Scored(
        candidate=candidate,
        name=name,
        review_share=float(np.nanmean(reps)),
        review_share_sd=0.0,
        pr_auc=float(average_precision_score(label, score)),
        roc_auc=float(roc_auc_score(label, score)),
        replicates=reps,
        score=np.asarray(score, dtype=np.float64),
    )


def selection_columns(data: SelectionData, groups: tuple[str, ...]) -> list[str]:
    """The feature columns of a candidate using these feature groups."""
    off = {c for g in data.group_columns if g not in groups for c in data.group_columns[g]}
    return [c for c in data.X_fit.columns if c not in off]


def select_model(
    data: SelectionData,
    *,
    recall: float,
    seed: int,
    trials: int,
    base_params: LgbmParams | None = None,
) -> Selection:
    """Score every candidate on the validation rows and choose one (deterministic for a seed)."""
    target_recall, recall = recall, criterion_recall(recall, int(data.y_valid.sum()))
    all_groups = tuple(data.group_columns)
    indices = bootstrap_indices(len(data.y_valid), seed)

    def columns(groups: tuple[str, ...]) -> list[str]:
        return selection_columns(data, groups)

    def evaluate(candidate: Candidate) -> Scored:
        cols = columns(candidate.groups)
        categorical = [c for c in data.categorical if c in cols]
        X_fit, X_valid = data.X_fit[cols], data.X_valid[cols]
        model = fit_model(candidate.kind, X_fit, data.y_fit, categorical, seed=seed, params=candidate.params)
        return _scored(candidate, candidate.name(all_groups), data.y_valid, model.predict(X_valid), recall, indices)

    params, search = search_lightgbm(evaluate, all_groups, base_params or LgbmParams(), seed=seed, trials=trials)
    candidates = [Candidate(LIGHTGBM, _without(all_groups, g), params) for g in all_groups]
    candidates += [Candidate(LOGISTIC, all_groups)]
    candidates += [Candidate(LOGISTIC, _without(all_groups, g)) for g in all_groups]
    scored = [search.pop("best_scored")] + [evaluate(c) for c in candidates if columns(c.groups)]
    winner, reason = choose(scored)
    log.info("model selection: %s (%s)", winner.name, reason)
    return Selection(
        winner=winner,
        scored=scored,
        reason=reason,
        recall=recall,
        target_recall=target_recall,
        validation_rows=len(data.y_valid),
        validation_violations=int(data.y_valid.sum()),
        search=search,
    )


def _without(groups: tuple[str, ...], group: str) -> tuple[str, ...]:
    return tuple(g for g in groups if g != group)


def search_lightgbm(
    evaluate: Callable[[Candidate], Scored], groups: tuple[str, ...], base: LgbmParams, *, seed: int, trials: int
) -> tuple[LgbmParams, dict[str, Any]]:
    """Seeded TPE search over LightGBM's capacity and regularisation; trial 0 is `base` itself."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: dict[int, Scored] = {}

    def objective(trial: optuna.Trial) -> float:
        params = replace(
            base,
            learning_rate=trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            num_leaves=trial.suggest_int("num_leaves", 7, 255, log=True),
            min_child_samples=trial.suggest_int("min_child_samples", 5, 400, log=True),
            feature_fraction=trial.suggest_float("feature_fraction", 0.5, 1.0),
            lambda_l2=trial.suggest_float("lambda_l2", 1e-3, 100.0, log=True),
        )
        scored = evaluate(Candidate(LIGHTGBM, groups, params))
        results[trial.number] = scored
        return scored.review_share - 1e-3 * scored.pr_auc  # PR-AUC only separates exact ties

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(
        {
            "learning_rate": base.learning_rate,
            "num_leaves": base.num_leaves,
            "min_child_samples": base.min_child_samples,
            "feature_fraction": base.feature_fraction,
            "lambda_l2": base.lambda_l2,
        }
    )
    study.optimize(objective, n_trials=max(1, trials))
    best = results[study.best_trial.number]
    assert best.candidate.params is not None
    return best.candidate.params, {
        "trials": len(study.trials),
        "best_trial": study.best_trial.number,
        "default_review_share": results[0].review_share,
        "best_review_share": best.review_share,
        "best_scored": best,
    }
