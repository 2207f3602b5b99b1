"""`triage train`: validated data -> time split -> features -> LightGBM + baseline -> calibration ->
thresholds -> evaluation -> bundle -> MLflow. Each stage lives in its own module; this file only wires them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from decision.alpha_split import AlphaSplit, Pilot, SplitPlan, plan_split
from decision.audit_sizing import size_audits
from decision.backtest import certify_shipped_rules
from decision.policy import Policy
from decision.rules import match_rule_masks
from decision.thresholds import ThresholdResult, choose_policy_thresholds, default_rules
from decision.tiers import risk_column, tier_alpha, tier_labels, unlisted_reasons, violations_needed
from decision.weighted import Strata
from decision.weighted import violations_needed as weighted_violations_needed
from features.builder import FeatureBuilder
from features.calibration import fit_calibrator
from features.config import DEFAULT_CONFIG_PATH, INCLUSION_PROB, DataConfig, load_config
from features.identify import PRODUCT_MATCH, ProductIdentifier, build_identifier, identify_history
from features.validate import load_table, validate_history
from training.evaluate import audit_weights, evaluate_scores, ranking_metrics
from training.export import history_frame, point_latest, write_bundle
from training.model_card import render_model_card
from training.registry import RegistryError
from training.select import (
    LOGISTIC,
    Selection,
    SelectionData,
    can_hold_out,
    inner_split,
    select_model,
    selection_columns,
    selection_data,
)
from training.split import FULLY_LABELLED_ROWS, NEWEST_ROWS, TimeSplit, split_by_time
from training.summary import in_words
from training.tiers import TierModel, TierSource, choose_tier_sources, fit_tier_models, tier_risk
from training.train import FittedModel, LgbmParams, fit_model

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    data: Path
    config: Path | None = None
    out: Path = Path("models")
    seed: int = 0
    # None: 0.2, grown (up to 0.4) when the certification rows would hold too few violations to certify
    # the recall targets (small exports); see `choose_calibration_fraction`
    calibration_fraction: float | None = None
    test_fraction: float = 0.2
    recall: float = 0.99
    block_precision: float = 0.98
    confidence: float = 0.95
    segment_by: str | None = None
    # violation tiers from the data config (False: one recall target, `recall`, over every violation)
    tiers: bool = True
    # rows the shipped policy is certified on: the calibration split, or (default) calibration + test,
    # after the test evaluation (which uses thresholds certified on the calibration split alone)
    certify_on: str = "calibration+test"
    # groups model selection starts from (None: every group the data supports and the config allows)
    feature_groups: tuple[str, ...] | None = None
    validation_fraction: float = 0.2  # newest share of the training part held out for model selection
    search_trials: int = 12  # LightGBM hyperparameter trials (fixed budget, seeded)
    log_mlflow: bool = True
    # move the registry's `candidate` alias to this run's model (None: only when `out` is models/)
    move_candidate: bool | None = None
    # repoint `out/latest` at the new bundle; False (a retrain's challenger) leaves `latest` naming what it
    # named, so a service started on it never serves a model the promotion gate has not passed
    move_latest: bool = True
    show_progress: bool = True
    lgbm: LgbmParams = field(default_factory=LgbmParams)
    # raise the policy's audit rates where the next certificate on logged labels needs them
    # (`decision.audit_sizing`); False keeps the policy's default rates
    audit_sizing: bool = True
    # listings the next certification will stand for (None: as many as this run's certification rows)
    audit_volume: float | None = None
    # share the confidence budget among recall and block precision as the model selection's validation
    # rows predict pays most (`decision.alpha_split`); False: half to the block, half to the tiers
    plan_alpha_split: bool = True
    # known prohibited products (entry_id, name, aliases "|"-joined, reason, action); None: the
    # marketplace's configs/catalogue.csv when present, else no catalogue matching
    catalogue: Path | None = None
    # run the table-sized stages on Dask: "local:N" (N worker processes here) or a scheduler address
    # (tcp://host:8786); None: in this process
    cluster: str | None = None
    # outcomes known besides the training rows (a retrain's gate verdicts), counted in merchant history
    # only: the rows' point-in-time features and the snapshot the service starts from, never trained or
    # certified on. Without them a verdict reviewed before the snapshot's cutoff but not in the training
    # rows is never counted live (`features.merchant.MerchantUpdates` takes it for part of the snapshot)
    merchant_outcomes: Path | None = None
    # the newest creation time of the fully labelled rows (a retrain's original history, every listing of
    # which was reviewed); when the newest rows are audit-sampled too thinly to certify the recall targets
    # even with no miss, the policy is certified on the newest of these rows instead
    # (`split_for_certification`). None: always on the newest rows
    fully_labelled_until: datetime | str | None = None


@dataclass
class TrainResult:
    bundle_dir: Path
    metrics: dict[str, Any]
    mlflow: dict[str, str] | None


@contextmanager
def _stages(show: bool) -> Iterator[Any]:
    """A stage context per pipeline stage: a progress line when `show`, and a log line with its time."""
    if not show:
        yield _logged_stage
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=False) as bar:

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            task = bar.add_task(name, total=1)
            with _logged_stage(name):
                yield
            bar.update(task, completed=1, description=f"[green]✓[/] {name}")

        yield stage


@contextmanager
def _logged_stage(name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    log.info("stage done in %.1f s: %s", time.perf_counter() - start, name)


def _new_version(out: Path) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    version, n = stamp, 1
    while (out / version).exists():
        n += 1
        version = f"{stamp}-{n}"
    return version


CERTIFY_ON = ("calibration", "calibration+test")
REVIEW_WARNING_SHARE = 0.9  # a policy sending more than this to human review is said out loud


def _reference(
    part: pd.DataFrame, risk: np.ndarray, config: DataConfig, tier_risk: np.ndarray | None = None
) -> pd.DataFrame:
    """Scored rows as the simulator replays them: risk (and per tier: its risk and each violation's
    tier), label, handling time, segments."""
    label = part[config.label].to_numpy(dtype=np.int64)
    ref = pd.DataFrame({"listing_id": part[config.id].astype(str).to_numpy(), "risk": risk, "label": label})
    if tier_risk is not None:
        ref["tier"] = tiers_of(part, config)
        for k, name in enumerate(config.tier_names):
            ref[risk_column(name)] = tier_risk[:, k]
    if config.review_seconds and config.review_seconds in part:  # absent: workload in items, hours imputed
        ref["review_seconds"] = part[config.review_seconds].to_numpy(dtype=np.float64)
    for column in config.segments:
        ref[column] = part[column].astype(str).to_numpy()
    if config.timestamp:
        ref["created_at"] = part[config.timestamp].to_numpy()
    if INCLUSION_PROB in part:  # audit-sampled labels: certification counts each row 1 / pi times
        ref[INCLUSION_PROB] = part[INCLUSION_PROB].to_numpy(dtype=np.float64)
    return ref


def tiers_of(part: pd.DataFrame, config: DataConfig) -> np.ndarray:
    reasons = part[config.violation_reason].to_numpy(dtype=object) if config.violation_reason else None
    return tier_labels(part[config.label].to_numpy(), reasons, config)


def tier_config(config: DataConfig, table: pd.DataFrame, options: TrainOptions) -> tuple[DataConfig, list[str]]:
    """The config the bundle is trained with: tiered only when asked for and the data can carry it."""
    if not config.tiered:
        return config, []
    if not options.tiers:
        return config.single_tier(), ["tiers off (--single-tier): one recall target over every violation"]
    if config.violation_reason not in table:
        return config.single_tier(), [
            f"tiers off: the data has no violation-reason column {config.violation_reason!r}, so violations "
            "cannot be assigned to tiers; one recall target over every violation"
        ]
    return config, unlisted_reason_notes(table, config)


UNLISTED_SHOWN = 10  # unlisted reasons named in the warning, most frequent first


def unlisted_reason_notes(table: pd.DataFrame, config: DataConfig) -> list[str]:
    """A warning when rejected rows give violation reasons that no tier lists: those rows count in the
    fallback tier, which changes its certificate, and a reason missing from the config (a new reason, a
    different spelling) would otherwise go unnoticed."""
    unlisted = unlisted_reasons(table[config.label].to_numpy(), table[config.violation_reason], config)
    if not unlisted:
        return []
    shown = ", ".join(f"{reason!r} ({n:,})" for reason, n in list(unlisted.items())[:UNLISTED_SHOWN])
    more = f" and {len(unlisted) - UNLISTED_SHOWN} more" if len(unlisted) > UNLISTED_SHOWN else ""
    return [
        f"column {config.violation_reason!r}: {sum(unlisted.values()):,} rejected rows give reasons that no tier "
        f"lists: {shown}{more}; they count in tier {config.fallback_tier!r}. List each reason under a tier "
        f"({config.where()})"
    ]


def empty_column_notes(table: pd.DataFrame, config: DataConfig) -> list[str]:
    """A warning per feature column without a value in any row (blank text or category, missing number):
    the run goes on, but such a column gives the model nothing and is most often an export or mapping
    mistake, which a model no better than chance would otherwise leave unexplained."""
    blank = [c for c in [*config.text, *config.categorical] if not table[c].str.strip().ne("").any()]
    missing = [c for c in config.numeric if table[c].isna().all()]
    roles = config.column_roles()
    return [
        f"column {c!r} (role {' and '.join(roles[c])}) is empty in every one of the {len(table):,} rows: "
        f"it gives the model nothing: check the export, or leave it out of the data config ({config.where()})"
        for c in dict.fromkeys([*blank, *missing])
    ]


CALIBRATION_FRACTIONS = (0.2, 0.25, 0.3, 0.35, 0.4)  # tried in order when the fraction is chosen
VIOLATION_MARGIN = 1.5  # certification rows should hold this many times the fewest violations that certify


def recall_levels(config: DataConfig, options: TrainOptions) -> tuple[float, dict[str, float]]:
    """The level each recall target is certified at before the split is planned (delta / 2 for one target,
    a tier's share of it otherwise) and the targets, per tier (or "all")."""
    delta = 1 - options.confidence
    if config.tiered:
        alpha, _ = tier_alpha(delta, len(config.tiers))
        return alpha, {t.name: t.recall for t in config.tiers}
    return delta / 2, {"all": options.recall}


def violations_to_certify(config: DataConfig, options: TrainOptions) -> dict[str, int]:
    """Per tier (or "all"), the fewest violations with which its recall target can be certified at all."""
    alpha, recalls = recall_levels(config, options)
    return {name: violations_needed(recall, alpha) for name, recall in recalls.items()}


def choose_calibration_fraction(
    table: pd.DataFrame, config: DataConfig, options: TrainOptions
) -> tuple[float, str | None]:
    """The calibration share: as given, else the smallest of CALIBRATION_FRACTIONS whose certification
    rows hold VIOLATION_MARGIN x the violations each recall target needs (the largest when none does),
    never raised so far that model selection cannot hold out a validation part of the training rows.

    A small export then gives up some training rows to make its targets certifiable. The choice uses
    only how many violations fall in the newest rows, and the recall bound holds given that count (it
    is conditional on n1), so choosing by it keeps the guarantee.
    """
    if options.calibration_fraction is not None:
        return options.calibration_fraction, None
    needed = violations_to_certify(config, options)
    fraction, counts = CALIBRATION_FRACTIONS[0], {}
    for candidate in CALIBRATION_FRACTIONS:
        parts = split_by_time(table, config, candidate, options.test_fraction)
        if candidate > fraction and not can_hold_out(len(parts.train), options.validation_fraction):
            break  # a larger share would leave model selection too few training rows
        rows = _certification_rows(parts.calibration, parts.test, options)
        fraction, counts = candidate, _violation_counts(rows, config)
        if all(counts.get(name, 0) >= VIOLATION_MARGIN * need for name, need in needed.items()):
            break
    if fraction == CALIBRATION_FRACTIONS[0]:
        return fraction, None
    return fraction, (
        f"calibration share raised from {CALIBRATION_FRACTIONS[0]:.0%} to {fraction:.0%} of the rows: the recall "
        f"targets need at least {in_words(needed)} violations in the certification rows (aiming for "
        f"{VIOLATION_MARGIN:g}x), which hold {in_words(counts)}"
    )


def split_for_certification(
    table: pd.DataFrame, config: DataConfig, options: TrainOptions
) -> tuple[TimeSplit, list[str], str]:
    """The time split, its notes, and which rows certify: the newest rows, unless they cannot.

    Once the service decides, the newest rows are a retrain's exported verdicts: reviewed listings and an
    audited sample of the automated ones (weighted by 1 / inclusion probability). Their certificate
    (`decision.weighted`) caps its bets by the heaviest weight, 1 / (the lowest audit rate), so at a small
    volume even a run with no miss at all cannot certify the recall targets (a 2% floor needs thousands of
    violations). When `options.fully_labelled_until` names the end of the fully labelled history and the
    newest rows hold fewer than VIOLATION_MARGIN x the violations their design needs with no miss
    (`decision.weighted.violations_needed`, at each target's default level), the calibration and test parts
    are the newest rows of that history instead, provided they hold the violations the exact certificate
    needs, and every other row trains (the verdicts since included, in time order).

    Validity. Given the number of labelled violations of a target (per tier), the newest rows' violations
    are i.i.d. draws of their kind, and their recall test conditions on that number; the choice reads only
    it and the design (inclusion probabilities), so a recall certificate on the newest rows holds at its
    level. A certificate on the history rows holds at its level when the model is independent of their
    labels. In a retrain it is not quite: it was trained on verdicts that the champion's policy chose to
    label (its thresholds and audit rates), and that policy was certified on these same rows. The
    dependence runs through those few numbers only; the loop benchmark measures what it does (failures by
    the generator's expectation unchanged, `bench/RESULTS_LOOP.md`). The block-precision test conditions on
    the blocked rows: a choice by the violation count can move its level only through that count's
    correlation with their labels, as the calibration share's choice already can
    (`choose_calibration_fraction`). What a certificate on the history assumes is what the bundle
    trained before the service decided assumes: traffic like those rows. The promotion gate re-tests the
    targets on the newest verdicts, but at the thin audits that lead here it resolves little.
    """
    fraction, fraction_note = choose_calibration_fraction(table, config, options)
    parts = split_by_time(table, config, fraction, options.test_fraction)
    notes = [fraction_note] if fraction_note else []
    if options.fully_labelled_until is None:
        return parts, notes, NEWEST_ROWS
    labelled = fully_labelled_mask(table, config, options.fully_labelled_until)
    short = _weighted_shortfall(_certification_rows(parts.calibration, parts.test, options), config, options)
    if not short:
        return parts, notes, NEWEST_ROWS
    kept = f"certified on the newest rows, audit-sampled too thinly to certify ({'; '.join(short)})"
    history = table[labelled].reset_index(drop=True)
    try:
        if history.empty:
            raise ValueError("none was created by then")
        older, older_note = choose_calibration_fraction(history, config, options)
        window = split_by_time(history, config, older, options.test_fraction)
    except ValueError as exc:
        return parts, [*notes, f"{kept}: the {len(history):,} fully labelled rows cannot be split ({exc})"], NEWEST_ROWS
    have = _violation_counts(_certification_rows(window.calibration, window.test, options), config)
    need = {name: n for name, n in violations_to_certify(config, options).items() if have.get(name, 0) < n}
    if need:
        return parts, [*notes, f"{kept}: the fully labelled rows hold too few violations too ({in_words(have)}; "
                       f"at least {in_words(need)} needed)"], NEWEST_ROWS  # fmt: skip
    train = pd.concat([window.train, table[~labelled]], ignore_index=True)
    train = train.iloc[pd.to_datetime(train[config.timestamp], utc=True).argsort(kind="stable")]
    notes = [older_note] if older_note else []
    notes.append(
        f"certified on the newest fully labelled rows (created up to {pd.Timestamp(options.fully_labelled_until)}): "
        f"the newest rows are audit-sampled too thinly ({'; '.join(short)}); the {int((~labelled).sum()):,} rows "
        "since train the model"
    )
    return TimeSplit(train.reset_index(drop=True), window.calibration, window.test), notes, FULLY_LABELLED_ROWS


def fully_labelled_mask(table: pd.DataFrame, config: DataConfig, until: datetime | str) -> np.ndarray:
    """The rows created by `until`, the end of the fully labelled history; a ValueError naming the first
    audit-sampled row when any of them is one (`until` is then not where the history ends)."""
    if config.timestamp is None:
        raise ValueError("--fully-labelled-until needs a timestamp column in the data config (timestamp: null)")
    created = pd.to_datetime(table[config.timestamp], utc=True)
    end = pd.Timestamp(until)
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    labelled = (created <= end).to_numpy()
    if INCLUSION_PROB in table:
        sampled = (table[INCLUSION_PROB] < 1.0).to_numpy()
        if (labelled & sampled).any():
            raise ValueError(
                f"--fully-labelled-until {end.isoformat()}: {int((labelled & sampled).sum()):,} rows created by then "
                f"are audit-sampled (inclusion_prob below 1), the first created {created[sampled].min().isoformat()}: "
                "name a time before it, the newest creation time of the original history"
            )
    return labelled


def _certification_rows(calibration: pd.DataFrame, test: pd.DataFrame, options: TrainOptions) -> pd.DataFrame:
    """The rows the shipped policy is certified on (`certify_on`)."""
    parts = [calibration, test] if options.certify_on == "calibration+test" else [calibration]
    return pd.concat(parts, ignore_index=True)


def _weighted_shortfall(rows: pd.DataFrame, config: DataConfig, options: TrainOptions) -> list[str]:
    """The recall targets (in words) the audit-weighted `rows` hold fewer than VIOLATION_MARGIN x the
    violations their design needs with no miss, at each target's default level; none when every row is
    fully labelled."""
    if INCLUSION_PROB not in rows or bool((rows[INCLUSION_PROB] >= 1.0).all()):
        return []
    pi = Strata.of(rows[INCLUSION_PROB].to_numpy(dtype=np.float64)).pi
    alpha, recalls = recall_levels(config, options)
    counts = _violation_counts(rows, config)
    short = []
    for name, recall in recalls.items():
        needed = weighted_violations_needed(pi, recall, alpha)
        if needed is None or counts.get(name, 0) < VIOLATION_MARGIN * needed:
            wanted = "more than any export holds" if needed is None else f"{needed:,} with no miss"
            short.append(
                f"{name}: recall >= {recall:g} needs {wanted} ({VIOLATION_MARGIN:g}x wanted), "
                f"they hold {counts.get(name, 0):,} violations"
            )
    return short


def _violation_counts(rows: pd.DataFrame, config: DataConfig) -> dict[str, int]:
    if not config.tiered:
        return {"all": int(rows[config.label].sum())}
    tiers = pd.Series(tiers_of(rows, config))
    return {name: int((tiers == name).sum()) for name in config.tier_names}


@dataclass
class Fitted:
    """What the table-sized stages (load, split, selection, features, fits) hand to calibration,
    certification and export, whether they ran in this process or on a Dask cluster."""

    config: DataConfig  # as trained: tiered only when the data carries tiers
    notes: list[str]  # warnings the stages raised, for metrics.json
    sizes: dict[str, int]  # rows of train, calibration and test
    selection: Selection
    tier_sources: list[TierSource]
    builder: FeatureBuilder
    model: FittedModel
    baseline: FittedModel
    tier_models: list[TierModel]
    calibration: pd.DataFrame  # the calibration split's rows, in time order
    test: pd.DataFrame  # the test split's rows, in time order
    X_cal: pd.DataFrame
    X_test: pd.DataFrame
    w_cal: np.ndarray | None  # 1 / inclusion probability of the calibration rows (None: all labelled)
    identifier: ProductIdentifier | None
    matches: pd.Series  # point-in-time product_match of (at least) every calibration and test row, by id
    example: pd.DataFrame  # a few rows as the export holds them, for the MLflow signature
    certified_on_rows: str = NEWEST_ROWS  # or FULLY_LABELLED_ROWS (`split_for_certification`)


def train(options: TrainOptions) -> TrainResult:
    if options.certify_on not in CERTIFY_ON:
        raise ValueError(f"certify_on: {options.certify_on!r} is not one of {list(CERTIFY_ON)}")
    config = load_config(options.config)
    config.check_segment_by(options.segment_by)
    if options.cluster and options.merchant_outcomes is not None:
        raise ValueError("merchant outcomes besides the training rows are not supported with --cluster")
    if options.cluster and options.fully_labelled_until is not None:
        raise ValueError("--fully-labelled-until is not supported with --cluster")
    with _stages(options.show_progress) as stage:
        if options.cluster:
            from training.distributed import fit_on_cluster

            fitted = fit_on_cluster(options, config, stage)
        else:
            fitted = _fit_in_process(options, config, stage)
        return _finish(fitted, options, stage)


def merchant_outcomes(table: pd.DataFrame, extra: Path | None, config: DataConfig) -> pd.DataFrame:
    """The outcomes merchant history counts: the training rows, plus `extra` (`TrainOptions.merchant_outcomes`)
    where given. A listing in both counts once, as the training row."""
    if extra is None:
        return table
    try:
        more = validate_history(load_table(extra, config), config)
    except ValueError as exc:  # a DataValidationError too: name the file, as the training data's errors do
        raise ValueError(f"merchant outcomes {extra}: {exc}") from exc
    more = more[~more[config.id].astype(str).isin(set(table[config.id].astype(str)))]
    return pd.concat([table, more], ignore_index=True) if len(more) else table


def _fit_in_process(options: TrainOptions, config: DataConfig, stage: Any) -> Fitted:
    with stage("load and validate data"):
        raw = load_table(options.data, config)
        table = validate_history(raw, config)
        # the MLflow signature takes the export's own column types, as callers will send them
        example = raw[config.listing_columns].tail(5).reset_index(drop=True)
        del raw
        outcomes = merchant_outcomes(table, options.merchant_outcomes, config)
    config, notes = tier_config(config, table, options)
    notes += empty_column_notes(table, config)
    with stage("split by time"):
        parts, split_notes, certified_on_rows = split_for_certification(table, config, options)
        notes += split_notes
    with stage(f"select the model on the newest {options.validation_fraction:.0%} of the training part"):
        inner = selection_data(
            parts.train,
            table,
            config,
            seed=options.seed,
            validation_fraction=options.validation_fraction,
            feature_groups=options.feature_groups,
        )
        selection, tier_sources = select(inner, parts.train, config, options, stage)
    del inner
    chosen = selection.winner.candidate
    with stage(f"build features ({len(table):,} rows)"):
        builder = FeatureBuilder(config, seed=options.seed, feature_groups=chosen.groups)
        X_train = builder.fit_transform(parts.train, history=outcomes)
        X_cal = builder.transform(parts.calibration, history=outcomes)
        X_test = builder.transform(parts.test, history=outcomes)
    y_train = parts.train[config.label].to_numpy(dtype=np.int64)
    categorical = list(builder.categorical_features)
    # audit-sampled labels count 1 / pi times, so the model and calibrator learn traffic as it is,
    # not the reviewed share of it (Horvitz & Thompson 1952)
    w_train, w_cal = audit_weights(parts.train), audit_weights(parts.calibration)
    with stage(f"fit {selection.winner.name} on the whole training part"):
        model = fit_model(
            chosen.kind, X_train, y_train, categorical, seed=options.seed, params=chosen.params, weight=w_train
        )
    with stage("fit logistic-regression baseline"):
        baseline = fit_model(LOGISTIC, X_train, y_train, categorical, seed=options.seed, weight=w_train)
    tier_models: list[TierModel] = []
    if config.tiered:
        with stage(f"fit one {selection.winner.name} per tier ({', '.join(config.tier_names)})"):
            tier_models = fit_tier_models(
                config.tier_names,
                {source.name: source.own for source in tier_sources},
                model,
                chosen.kind,
                chosen.params,
                X_train,
                tiers_of(parts.train, config),
                X_cal,
                tiers_of(parts.calibration, config),
                categorical,
                seed=options.seed,
                weight_train=w_train,
                weight_cal=w_cal,
            )
    with stage("index rejected listings for product identification"):
        catalogue = catalogue_of(options)
        identifier = build_identifier(table, config, catalogue)
        matches = identify_history(table, config, catalogue)[PRODUCT_MATCH].set_axis(table[config.id])
    return Fitted(
        config=config,
        notes=notes,
        sizes=parts.sizes(),
        selection=selection,
        tier_sources=tier_sources,
        builder=builder,
        model=model,
        baseline=baseline,
        tier_models=tier_models,
        calibration=parts.calibration,
        test=parts.test,
        X_cal=X_cal,
        X_test=X_test,
        w_cal=w_cal,
        identifier=identifier,
        matches=matches,
        example=example,
        certified_on_rows=certified_on_rows,
    )


def select(
    inner: SelectionData, train_rows: pd.DataFrame, config: DataConfig, options: TrainOptions, stage: Any
) -> tuple[Selection, list[TierSource]]:
    """Model selection on `inner` (features of `train_rows`, the training part or its newest rows),
    then each tier's source: its own model or the overall one."""
    selection = select_model(
        inner, recall=options.recall, seed=options.seed, trials=options.search_trials, base_params=options.lgbm
    )
    chosen = selection.winner.candidate
    assert selection.winner.score is not None
    cut = inner_split(len(train_rows), options.validation_fraction)
    weight = audit_weights(train_rows.iloc[cut:])  # audit-sampled labels stand for 1 / pi listings
    if not config.tiered:
        selection.pilot = Pilot.untiered(selection.winner.score, inner.y_valid, weight)
        return selection, []
    with stage("choose each tier's model on the validation part: its own or the overall one"):
        tiers_valid = tiers_of(train_rows.iloc[cut:], config)
        tier_sources = choose_tier_sources(
            inner,
            selection_columns(inner, chosen.groups),
            chosen.kind,
            chosen.params,
            config.tiers,
            tiers_of(train_rows.iloc[:cut], config),
            tiers_valid,
            seed=options.seed,
        )
    index = np.full(len(tiers_valid), -1)
    for k, name in enumerate(config.tier_names):
        index[tiers_valid == name] = k
    risks = [source.validation_risk for source in tier_sources if source.validation_risk is not None]
    if len(risks) == len(tier_sources):
        selection.pilot = Pilot(
            selection.winner.score, inner.y_valid.astype(bool), np.column_stack(risks), index, weight
        )
    return selection, tier_sources


def _finish(fitted: Fitted, options: TrainOptions, stage: Any) -> TrainResult:
    """Calibrate, choose and certify thresholds, evaluate, certify the rules, export, log to MLflow."""
    config, model, tier_models = fitted.config, fitted.model, fitted.tier_models
    matches = fitted.matches
    X_cal, X_test = fitted.X_cal, fitted.X_test

    def identified(part: pd.DataFrame) -> pd.DataFrame:
        """The split with its point-in-time `product_match` column, which match rules read."""
        return part.assign(**{PRODUCT_MATCH: part[config.id].map(matches).fillna("").to_numpy()})

    with stage("calibrate on the calibration split"):
        raw_cal = model.predict(X_cal)
        y_cal = fitted.calibration[config.label].to_numpy(dtype=np.int64)
        calibrator = fit_calibrator(raw_cal, y_cal, fitted.w_cal)
        reference = _reference(
            fitted.calibration, calibrator(raw_cal), config, tier_risk(tier_models, X_cal) if tier_models else None
        )

    split_plans: dict[int, SplitPlan] = {}

    def certify(rows: pd.DataFrame) -> ThresholdResult:
        recalls = [t.recall for t in config.tiers] if config.tiered else [options.recall]
        pilot = fitted.selection.pilot if options.plan_alpha_split else None
        plan = plan_split(pilot, recalls, options.block_precision, 1 - options.confidence, len(rows))
        result = choose_policy_thresholds(
            rows,
            recall=options.recall,
            block_precision=options.block_precision,
            delta=1 - options.confidence,
            segment_by=options.segment_by,
            tiers=config.tiers if config.tiered else (),
            alpha_split=plan.chosen,
        )
        split_plans[len(rows)] = plan.as_applied(result.targets)
        return result

    with stage("choose thresholds on the calibration split"):
        thresholds = certify(reference)
        policy = thresholds.to_policy(rules=default_rules(config)).validate(config.listing_columns)
    with stage("evaluate on the test split"):
        test_frame = _reference(
            fitted.test,
            calibrator(model.predict(X_test)),
            config,
            tier_risk(tier_models, X_test) if tier_models else None,
        )
        history = pd.concat(
            [
                history_frame(identified(fitted.calibration), reference, config, "calibration"),
                history_frame(identified(fitted.test), test_frame, config, "test"),
            ],
            ignore_index=True,
        )
        baseline_risk = fitted.baseline.predict(X_test)
        test_frame["baseline_risk"] = baseline_risk
        rule_block, rule_review = match_rule_masks(identified(fitted.test), policy.rules)
        metrics = _metrics(
            fitted.sizes,
            test_frame,
            (rule_block, rule_review),
            policy,
            config,
            thresholds,
            baseline_risk=baseline_risk,
            model=model,
            selection=fitted.selection,
        )
    if options.certify_on == "calibration+test":
        with stage("certify the shipped policy on calibration + test"):
            reference = pd.concat([reference, test_frame.drop(columns="baseline_risk")], ignore_index=True)
            evaluated = thresholds
            thresholds = certify(reference)
            policy = thresholds.to_policy(rules=default_rules(config)).validate(config.listing_columns)
            metrics["thresholds_evaluated"] = evaluated.to_dict()
            metrics["thresholds"] = thresholds.to_dict()
    metrics["certification"] = certification_report(thresholds, options, len(reference))
    metrics["certification"]["rows_from"] = fitted.certified_on_rows  # (`split_for_certification`)
    if config.timestamp is not None:
        stamp = [config.timestamp]
        created = pd.to_datetime(
            _certification_rows(fitted.calibration[stamp], fitted.test[stamp], options)[config.timestamp], utc=True
        )
        metrics["certification"]["created"] = {"first": created.min().isoformat(), "last": created.max().isoformat()}
    metrics["alpha_split"] = split_plans[len(reference)].to_dict()
    metrics["tier_models"] = [
        {**source.to_dict(), "own_model": m.own, "train_violations": m.train_violations}
        for source, m in zip(fitted.tier_sources, tier_models, strict=True)
    ]
    with stage(f"certify the shipped rules on the held-out rows ({len(history):,})"):
        policy, rules_report = certify_shipped_rules(history, policy)
        metrics["rules"] = rules_report
    if options.audit_sizing and thresholds.feasible:
        sizing = size_audits(
            reference,
            policy,
            1 - options.confidence,
            options.recall,
            config.tiers if config.tiered else (),
            volume=options.audit_volume,
        )
        if sizing is not None:
            policy = sizing.apply(policy)
            metrics["audit_sizing"] = sizing.to_dict()
    metrics["warnings"] = [
        *fitted.notes,
        *metrics["warnings"],
        *metrics["certification"]["warnings"],
        *rules_report["warnings"],
    ]
    with stage("export bundle"):
        options.out.mkdir(parents=True, exist_ok=True)
        bundle_dir = options.out / _new_version(options.out)
        write_bundle(
            bundle_dir,
            model=model,
            builder=fitted.builder,
            calibrator=calibrator,
            tier_models=tier_models,
            policy=policy,
            config=config,
            metrics=metrics,
            reference=reference,
            test_scores=test_frame,
            test_rows=fitted.test,
            history=history,
            rules_report=rules_report,
            identifier=fitted.identifier,
            model_card=render_model_card(bundle_dir.name, metrics, policy, options),
        )
        if options.move_latest:
            point_latest(options.out, bundle_dir)
    mlflow_info = None
    if options.log_mlflow:
        with stage("log run to MLflow and register the model"):
            try:
                mlflow_info = _log_mlflow(bundle_dir, options, metrics, fitted.example)
            except Exception as exc:  # the bundle is whole and in place: say so, not only the traceback
                pointed = f" and {options.out / 'latest'} points to it" if options.move_latest else ""
                raise RegistryError(
                    f"bundle {bundle_dir} is exported{pointed}, but logging the "
                    f"run to MLflow failed ({type(exc).__name__}: {exc}); the bundle serves as it is "
                    "(`triage serve --bundle`), and `--no-mlflow` trains without the registry"
                ) from exc
    return TrainResult(bundle_dir=bundle_dir, metrics=metrics, mlflow=mlflow_info)


def catalogue_of(options: TrainOptions) -> pd.DataFrame | None:
    """The catalogue of known prohibited products to ship, if any."""
    path = options.catalogue or DEFAULT_CONFIG_PATH.parent / "catalogue.csv"
    if options.catalogue is None and not path.is_file():
        return None
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _metrics(
    sizes: dict[str, int],
    test_frame: pd.DataFrame,
    rule_masks: tuple[np.ndarray, np.ndarray],
    policy: Policy,
    config: DataConfig,
    thresholds: Any,
    baseline_risk: np.ndarray,
    model: FittedModel,
    selection: Selection,
) -> dict[str, Any]:
    test = evaluate_scores(test_frame, policy, segments=config.segments, rule_masks=rule_masks)
    baseline = ranking_metrics(test_frame["label"].to_numpy(), baseline_risk, audit_weights(test_frame))
    return {
        "split_sizes": sizes,
        "model": {
            "kind": model.kind,
            "name": selection.winner.name,
            "feature_groups": list(selection.winner.candidate.groups),
        },
        "selection": selection.to_dict(),
        "test": test,
        "baseline_test": baseline,
        "warnings": _warnings(test, baseline, selection),
        "thresholds": thresholds.to_dict(),
        "feature_importance": model.importance(),
        "feature_importance_kind": model.importance_kind,
        "best_iteration": model.iterations,
    }


# The test split decides nothing (selection used the validation part); a shipped model that ranks worse
# than the baseline there is said out loud.
TEST_AUC_TOLERANCE = 0.005


def _warnings(test: dict[str, Any], baseline: dict[str, Any], selection: Selection) -> list[str]:
    warnings = []
    model_auc, baseline_auc = test.get("roc_auc"), baseline.get("roc_auc")
    if model_auc is not None and baseline_auc is not None and model_auc < baseline_auc - TEST_AUC_TOLERANCE:
        warnings.append(
            f"the shipped {selection.winner.name} ranks worse than the logistic baseline on the test split "
            f"(ROC-AUC {model_auc:.4f} vs {baseline_auc:.4f}); it won on validation: {selection.reason}"
        )
    if selection.validation_violations < 30:
        warnings.append(
            f"model selection saw only {selection.validation_violations} violations in its validation part; "
            "the choice rests mostly on PR-AUC and is uncertain"
        )
    return warnings


def certification_report(thresholds: ThresholdResult, options: TrainOptions, rows: int) -> dict[str, Any]:
    """Whether the shipped policy's targets are certified, and if not, the strongest targets that are."""
    tiers = [t.to_dict() for t in thresholds.tiers]
    report: dict[str, Any] = {
        "certified_on": options.certify_on,
        "rows": rows,
        "feasible": thresholds.feasible,
        "mode": thresholds.mode,
        "message": thresholds.message,
        "confidence": options.confidence,
        "tiers": tiers,
        "warnings": [],
    }
    point = thresholds.point
    if tiers:
        report["strongest_certifiable"] = {t["name"]: t["best_certifiable_recall"] for t in tiers}
    elif thresholds.best_certifiable:  # audit-weighted rows: the weighted certificate's own bound
        report["strongest_certifiable"] = dict(thresholds.best_certifiable)
    elif point.n_violating:
        split = AlphaSplit.from_dict(thresholds.targets.get("alpha_split"), 1) or AlphaSplit.default(1)
        alpha = float(split.alphas(1 - options.confidence)[0][0])
        report["strongest_certifiable"] = {"all": float(alpha ** (1 / point.n_violating))}
    if not thresholds.feasible:
        report["warnings"].append(f"targets not certified: {thresholds.message}")
    if point.queue_share > REVIEW_WARNING_SHARE:
        report["warnings"].append(
            f"the shipped policy sends {point.queue_share:.0%} of the certification rows to human review"
        )
    return report


def _log_mlflow(
    bundle_dir: Path, options: TrainOptions, metrics: dict[str, Any], example: pd.DataFrame
) -> dict[str, str]:
    from training.registry import candidate_alias, log_run

    params = {
        "data": str(options.data),
        "seed": options.seed,
        "calibration_fraction": options.calibration_fraction,
        "test_fraction": options.test_fraction,
        "recall_target": options.recall,
        "block_precision_target": options.block_precision,
        "confidence": options.confidence,
        "validation_fraction": options.validation_fraction,
        "search_trials": options.search_trials,
        "selected_model": metrics["model"]["name"],
        "tiers": ", ".join(f"{t['name']}>={t['recall_target']:g}" for t in metrics["certification"]["tiers"]) or "one",
        "certified_on": metrics["certification"]["certified_on"],
        "targets_certified": metrics["certification"]["feasible"],
        "certification_message": metrics["certification"]["message"],
        "selection_reason": metrics["selection"]["reason"],
        **{f"lgbm.{k}": v for k, v in (metrics["selection"]["winner"]["lgbm_params"] or {}).items()},
    }
    logged = {k: v for k, v in metrics.items() if k not in ("feature_importance",)}
    cert = metrics["certification"]
    logged["certified"] = {
        "feasible": float(cert["feasible"]),
        "strongest_recall": cert.get("strongest_certifiable") or {},
        **{f"tier_{t['name']}": {"t_pass": t["t_pass"], "certified": float(t["certified"])} for t in cert["tiers"]},
    }
    return log_run(bundle_dir, params, logged, example, alias=candidate_alias(options.out, options.move_candidate))
