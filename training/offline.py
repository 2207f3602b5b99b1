"""Offline use of an exported bundle: evaluation on labelled data and batch scoring of files."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from bundle.load import Bundle
from decision.policy import CODE_BLOCK, CODE_REVIEW, decision_names, driving_tier, route
from decision.rules import match_rule_masks
from decision.tiers import risk_column, tier_labels
from features.config import DataConfig, load_config
from features.identify import PRODUCT_MATCH, identify_history
from features.validate import DataValidationError, load_table, stream_table, validate_history, validate_listings
from training.evaluate import evaluate_scores, json_safe
from training.held_out import HeldOut, held_out_rows

# Chunks are scored on one thread per core: features, identification and the ONNX models spend most of
# their time in native code that releases the GIL (200k rows: 11.1 s on one thread, 8.2 s on two, here).
# A call costs about 20 ms whatever its size (identification, the vectoriser and ONNX set-up): 20.1 µs a
# row in chunks of 25k, 18.7 in chunks of 50k and 100k (bench bundle, one thread); `score_file` on 1M rows
# ran 82-84k rows/s with 50k chunks against 77-79k with 25k (bench/RESULTS_OFFLINE.md).
SCORE_CHUNK_ROWS = 50_000


ROWS_CHOICES = ("test", "all")
SINGLE_ROLES = ("id", "merchant", "timestamp", "reviewed_at", "label", "violation_reason", "review_seconds")
LIST_ROLES = ("text", "categorical", "numeric")


def evaluate_bundle(
    bundle_path: Path,
    data: Path,
    oracle: Path | None = None,
    *,
    rows: str = "test",
    config_path: Path | None = None,
) -> dict[str, Any]:
    """Metrics of a bundle on labelled rows: by default only the rows of `data` that are in the bundle's
    own test split (never seen by training, calibration or threshold choice); `rows="all"` scores every
    row and says how many were not held out. With an oracle, its ROC-AUC on the same rows (and the
    reachable limit's, when the oracle has `limit_risk`).

    `config_path` reads a file whose columns are named differently from the bundle's: each role's
    column is renamed to the bundle's name for it."""
    if rows not in ROWS_CHOICES:
        raise ValueError(f"--rows must be one of {ROWS_CHOICES}, not {rows!r}")
    bundle = Bundle.load(bundle_path)
    config = bundle.config
    if config_path is not None:
        own = load_config(config_path)
        table = _renamed(validate_history(load_table(data, own), own), own, config)
    else:
        table = validate_history(load_table(data, config), config)
    held = held_out_rows(bundle, table)
    if rows == "test":
        if not held.test.any():
            raise ValueError(_no_test_rows(held, len(table), data, bundle.version))
        selected, warnings = table[held.test], held.warnings_test
    else:
        selected, warnings = table, held.warnings_all
    risk, tier_risk = bundle.scores(selected, history=table)
    frame = pd.DataFrame({"label": selected[config.label].to_numpy(), "risk": risk})
    if tier_risk is not None:  # the policy routes on every tier's risk, as the service does
        for k, name in enumerate(bundle.tier_names):
            frame[risk_column(name)] = tier_risk[:, k]
        reasons = selected[config.violation_reason].to_numpy() if config.violation_reason in selected else None
        frame["tier"] = tier_labels(frame["label"].to_numpy(), reasons, config)
    if config.review_seconds and config.review_seconds in selected:
        frame["review_seconds"] = selected[config.review_seconds].to_numpy(dtype=np.float64)
    for column in config.segments:
        frame[column] = selected[column].astype(str).to_numpy()
    rule_block, rule_review = match_rule_masks(identified_history(bundle, selected, table), bundle.policy.rules)
    metrics: dict[str, Any] = {
        "bundle": bundle.version,
        "data": str(data),
        "row_selection": rows,
        "warnings": warnings,
        **evaluate_scores(frame, bundle.policy, config.segments, (rule_block, rule_review)),
    }
    if oracle is not None:
        metrics.update(_oracle_metrics(oracle, selected[config.id], frame["label"].to_numpy(), data))
    return json_safe(metrics)


def _no_test_rows(held: HeldOut, n_rows: int, data: Path, version: str) -> str:
    if held.test_ids_only:
        return (
            f"none of the {n_rows:,} rows of {data} match bundle {version}'s test split: {held.test_ids_only:,} "
            f"share its listing ids but differ in {held.compared}, so this is other data; pass --rows all to "
            "evaluate every row"
        )
    return (
        f"none of the {n_rows:,} rows of {data} are in bundle {version}'s test split; "
        "pass --rows all to evaluate every row (the output then says how many were not held out)"
    )


def _oracle_metrics(oracle: Path, ids: pd.Series, label: np.ndarray, data: Path) -> dict[str, float]:
    truth = pd.read_parquet(oracle)
    joined = pd.DataFrame({"listing_id": ids.astype(str).to_numpy()}).merge(truth, on="listing_id", how="left")
    missing = int(joined["true_risk"].isna().sum())
    if missing:
        raise ValueError(f"oracle {oracle}: {missing} listings of {data} have no true_risk")
    out = {"oracle_roc_auc": float(roc_auc_score(label, joined["true_risk"]))}
    if "limit_risk" in joined:
        out["limit_roc_auc"] = float(roc_auc_score(label, joined["limit_risk"]))
    return out


def _renamed(table: pd.DataFrame, own: DataConfig, bundle: DataConfig) -> pd.DataFrame:
    """`table` read with `own` config, its role columns renamed to the bundle config's names."""
    mapping: dict[str, str] = {}
    for role in SINGLE_ROLES:
        mine, theirs = getattr(own, role), getattr(bundle, role)
        if theirs and not mine:
            raise ValueError(f"--config: role {role!r} has no column, but the bundle reads {theirs!r}")
        if mine and theirs:
            mapping[mine] = theirs
    for role in LIST_ROLES:
        mine, theirs = getattr(own, role), getattr(bundle, role)
        if len(mine) != len(theirs):
            raise ValueError(
                f"--config: role {role!r} lists {list(mine)}, the bundle reads {len(theirs)} columns {list(theirs)}"
            )
        mapping.update(zip(mine, theirs, strict=True))
    return table.rename(columns=mapping)


def _reads_product_match(bundle: Bundle) -> bool:
    return any(PRODUCT_MATCH in rule.columns for rule in bundle.policy.rules) and bundle.matcher is not None


def identified(bundle: Bundle, listings: pd.DataFrame) -> pd.DataFrame:
    """New listings with `product_match` as the service derives it (the bundle's identification index and
    catalogue), when a rule of the policy reads it; else the listings as they are."""
    if PRODUCT_MATCH in listings or not _reads_product_match(bundle):
        return listings
    assert bundle.matcher is not None
    return listings.assign(**{PRODUCT_MATCH: bundle.matcher.product_matches(listings, bundle.config.id)})


def identified_history(bundle: Bundle, selected: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Labelled rows with `product_match` point-in-time, as training evaluates them (`identify_history`:
    a row matches only listings of `table` rejected and reviewed before it was created), with the
    bundle's catalogue; else the rows as they are."""
    if not _reads_product_match(bundle) or PRODUCT_MATCH in selected:
        return selected
    assert bundle.matcher is not None
    catalogue = bundle.matcher.catalogue.entries if bundle.matcher.catalogue is not None else None
    matches = identify_history(table, bundle.config, catalogue, threshold=bundle.matcher.threshold)[PRODUCT_MATCH]
    return selected.assign(**{PRODUCT_MATCH: matches.loc[selected.index].to_numpy()})


def decide(bundle: Bundle, listings: pd.DataFrame, risk: np.ndarray, tier_risk: np.ndarray | None = None) -> np.ndarray:
    """Route scored listings with the bundle's policy (rules, then per-segment thresholds, and on a tiered
    bundle every tier's risk below its t_pass to pass): the service's `route` call.

    A rule only matters where it could still change the decision (`_open_to_rules`), so the rules
    run in stages, each on the listings still open to it: block rules on every listing (a block rule
    overrides everything else, a review rule's hit included), then the review rules on the listings decided
    automatically, then the rules that read `product_match`, with product identification, on the listings
    such a rule could still change. The same decisions as every rule on every listing (tests hold it so),
    for a fraction of the work when most listings go to review anyway."""
    policy = bundle.policy
    t_pass: np.ndarray | float
    t_block: np.ndarray | float
    if policy.segment_by:
        t_pass, t_block = policy.thresholds_for(listings[policy.segment_by].astype(str).to_numpy())
    else:
        t_pass, t_block = policy.t_pass, policy.t_block
    tier_pass = policy.tier_pass_vector(bundle.tier_names)
    acting = [rule for rule in policy.rules if rule.acts]
    identify = PRODUCT_MATCH not in listings and _reads_product_match(bundle)
    by_match = [rule for rule in acting if identify and PRODUCT_MATCH in rule.columns]
    block_rules = [rule for rule in acting if rule.action == "block" and rule not in by_match]
    review_rules = [rule for rule in acting if rule.action != "block" and rule not in by_match]
    n = len(listings)
    rule_block, rule_review = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    if block_rules:
        rule_block, rule_review = match_rule_masks(listings, block_rules)
    codes = route(risk, t_pass, t_block, rule_block, rule_review, tier_risk, tier_pass)
    for rules, with_matches in ((review_rules, False), (by_match, True)):
        rows = np.flatnonzero(_open_to_rules(codes, risk, rule_block, {rule.action for rule in rules}))
        if len(rows) == 0:
            continue
        subset = listings.iloc[rows]
        hit_block, hit_review = match_rule_masks(identified(bundle, subset) if with_matches else subset, rules)
        if hit_block.any() or hit_review.any():  # else the decisions stand
            rule_block[rows] |= hit_block
            rule_review[rows] |= hit_review
            codes = route(risk, t_pass, t_block, rule_block, rule_review, tier_risk, tier_pass)
    return codes


def _open_to_rules(codes: np.ndarray, risk: np.ndarray, rule_block: np.ndarray, actions: set[str]) -> np.ndarray:
    """The listings whose decision a rule of these actions could still change, given the decision without
    it (`decision.policy.route`: a block rule wins over a review rule, a review rule over the thresholds,
    and a listing whose risk is not finite is always reviewed): a review rule changes every automated
    decision except a block rule's; a block rule every decision but a block, where the risk is finite."""
    finite = np.isfinite(risk)
    open_ = np.zeros(len(codes), dtype=bool)
    if "review" in actions:
        open_ |= (codes != CODE_REVIEW) & ~(np.asarray(rule_block, dtype=bool) & finite)
    if "block" in actions:
        open_ |= (codes != CODE_BLOCK) & finite
    return open_


def score_frame(bundle: Bundle, listings: pd.DataFrame) -> pd.DataFrame:
    """Listing id, calibrated risk (and `risk_<tier>` per tier of a tiered bundle), decision and
    `decision_tier` (the tier behind it, as the service reports it; None for a pass or untiered) for
    validated listings: what `triage score` writes and the registered MLflow model returns."""
    risk, tier_risk = bundle.scores(listings)
    codes = decide(bundle, listings, risk, tier_risk)
    frame = pd.DataFrame({bundle.config.id: listings[bundle.config.id].to_numpy(), "risk": risk})
    names = bundle.tier_names
    for k, name in enumerate(names if tier_risk is not None else []):
        frame[risk_column(name)] = tier_risk[:, k]  # type: ignore[index]
    frame["decision"] = decision_names(codes)
    driver = driving_tier(codes, tier_risk, bundle.policy.tier_pass_vector(names))
    frame["decision_tier"] = np.asarray([*names, None], dtype=object)[driver]
    return frame


def scoring_columns(bundle: Bundle) -> list[str]:
    """The columns scoring reads from new listings: the listing columns and the policy's segment column
    (`product_match` too when a file brings it: see `identified`)."""
    segment = [bundle.policy.segment_by] if bundle.policy.segment_by else []
    return list(dict.fromkeys([*bundle.config.listing_columns, *segment]))


UNKNOWN_EXAMPLES = 5


def unknown_categories(bundle: Bundle, listings: pd.DataFrame) -> pd.Series:
    """Per (categorical column, value), the listings holding a value the bundle has no code for (unseen in
    training, or too rare there), which are scored as the unknown category: what the service warns of per
    listing, for a file (a column whose type changed since training, ints where training saw text, puts
    every row here). Values read as the builder reads them (`str`); counts of chunks or partitions add up."""
    found = []
    for column, table in bundle.builder.category_codes.items():
        if column in listings:
            values = listings[column].fillna("").astype("str")
            counts = values[~values.isin(list(table)) & (values != "")].value_counts(sort=False)
            found.append(pd.Series(counts.to_numpy(), index=pd.MultiIndex.from_product([[column], counts.index])))
    return pd.concat(found) if found else pd.Series([], index=pd.MultiIndex.from_arrays([[], []]), dtype="int64")


def unknown_summary(counts: list[pd.Series]) -> dict[str, dict[str, Any]]:
    """Chunks' `unknown_categories` as the summary reports them: per column, the listings and a few values
    (the commonest first)."""
    counts = [c for c in counts if len(c)]
    if not counts:
        return {}
    total = pd.concat(counts).groupby(level=[0, 1], sort=False).sum()
    summary = {}
    for column, per_value in total.groupby(level=0, sort=False):
        ordered = per_value.droplevel(0).sort_values(ascending=False, kind="stable")
        summary[str(column)] = {
            "rows": int(ordered.sum()),
            "values": [str(v) for v in ordered.index[:UNKNOWN_EXAMPLES]],
        }
    return summary


def score_file(bundle_path: Path, data: Path, out: Path, threads: int | None = None) -> dict[str, Any]:
    """Score every listing of a file (or of a directory of Parquet files, in name order: one table) in
    chunks, `threads` at a time (None: one per core); write listing id, risk and decision, in input order.

    A Parquet file streams (`stream_table`): chunks are read, validated, scored and written while the
    next ones are, so reading and writing overlap the scoring and memory holds a few chunks, not the
    file. The output is written under a temporary name and renamed when whole; bad input (a chunk's
    problem, or an id repeated in two chunks) stops the run with what validating the whole file
    reports, and leaves no output."""
    start = time.perf_counter()
    check_output_file(out, data)
    workers = max(1, threads or os.cpu_count() or 1)
    # one ONNX thread per run, as the service and Dask scoring load bundles: a tree ensemble summed over
    # several threads rounds differently, and the chunks' threads already share the cores (200k rows on
    # 2 cores, 2 chunk threads: 5.6 s with one ONNX thread each, 7.0 s with all, medians of 4 rounds)
    bundle = Bundle.load(bundle_path, threads=1)
    config = bundle.config
    columns = scoring_columns(bundle)
    stream = stream_table(data, config, columns, optional=[PRODUCT_MATCH], batch_rows=SCORE_CHUNK_ROWS)

    def whole_file() -> pd.DataFrame:  # what validating the file in one piece returns, or its error
        return validate_listings(load_table(data, config, columns=columns, optional=[PRODUCT_MATCH]), config)

    chunks: Iterator[tuple[int, pd.DataFrame]]
    if stream is None:
        listings = whole_file()
        chunks = ((lo, listings.iloc[lo : lo + SCORE_CHUNK_ROWS]) for lo in range(0, len(listings), SCORE_CHUNK_ROWS))
    else:
        chunks = stream

    def score_chunk(first_row: int, chunk: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
        if stream is None:  # validated as one piece already
            return score_frame(bundle, chunk), _NO_HASHES, unknown_categories(bundle, chunk)
        validated = validate_listings(chunk, config, first_row=first_row)
        ids = pd.util.hash_pandas_object(validated[config.id], index=False).to_numpy()
        return score_frame(bundle, validated), ids, unknown_categories(bundle, validated)

    writer = ScoredWriter(out)
    decisions: dict[str, int] = {}
    hashes: list[np.ndarray] = []
    unknown: list[pd.Series] = []
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque[Future[tuple[pd.DataFrame, np.ndarray, pd.Series]]] = deque()

            def write_oldest() -> None:
                scored, ids, chunk_unknown = pending.popleft().result()
                writer.write(scored)
                hashes.append(ids)
                unknown.append(chunk_unknown)
                for name, count in scored["decision"].value_counts().items():
                    decisions[str(name)] = decisions.get(str(name), 0) + int(count)

            try:
                for first_row, chunk in chunks:
                    pending.append(pool.submit(score_chunk, first_row, chunk))
                    while len(pending) > workers + 1:  # a few chunks in memory, however long the file
                        write_oldest()
                while pending:
                    write_oldest()
            except BaseException as exc:  # an interrupt too: queued chunks are not scored
                for future in pending:
                    future.cancel()
                if isinstance(exc, DataValidationError) and stream is not None:
                    whole_file()  # raises with every problem of the file, as one piece reports them
                raise
        if not writer.rows:  # no rows: what an empty table validates and scores to
            writer.write(score_frame(bundle, whole_file()))
        if stream is not None and hashes and _repeats(np.concatenate(hashes)):
            whole_file()  # an id in two chunks: raises naming every row that shares one
        writer.close()
    finally:
        writer.discard()
    seconds = time.perf_counter() - start
    return {
        "rows": writer.rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(writer.rows / seconds),
        "out": str(out),
        "decisions": dict(sorted(decisions.items(), key=lambda item: -item[1])),
        "unknown_categories": unknown_summary(unknown),
    }


OUTPUT_SUFFIXES = (".parquet", ".pq", ".csv")


def check_output_file(out: Path, data: Path) -> None:
    """`--out` of `score_file`: a .parquet or .csv file (written whole or not at all), not a directory,
    not the input, and not inside the directory of Parquet files it scores (a later run would read it
    as listings)."""
    if out.resolve() == data.resolve():
        raise ValueError(f"--out {out} is the --data file: the scores would replace the listings; write them elsewhere")
    if data.is_dir() and out.resolve().parent == data.resolve():
        raise ValueError(
            f"--out {out} is inside --data {data}, whose Parquet files are the listings: write it elsewhere"
        )
    if out.is_dir():
        raise ValueError(
            f"--out {out} is a directory; name a .parquet or .csv file (a directory of Parquet parts is what "
            "--cluster writes)"
        )
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out {out}: name a .parquet or .csv file (the suffix says which is written)")


_NO_HASHES = np.zeros(0, dtype=np.uint64)


def _repeats(hashes: np.ndarray) -> bool:
    """Whether two of these 64-bit id hashes are equal (ids repeated, or, rarely, two ids colliding)."""
    return len(hashes) > 1 and bool((np.diff(np.sort(hashes)) == 0).any())


def output_schema(scored: pd.DataFrame) -> Any:
    """The Arrow schema an output file of scored rows is written with: `scored`'s, with a column of only
    missing values (`decision_tier` where no tier decided) typed as the `decision` text column is, so
    that every chunk, and every part a cluster writes, has the same schema."""
    import pyarrow as pa

    first = pa.Table.from_pandas(scored, preserve_index=False).schema
    text = first.field("decision").type if "decision" in first.names else pa.string()
    fields = [f.with_type(text) if pa.types.is_null(f.type) else f for f in first]
    return pa.schema(fields, metadata=first.metadata)


class ScoredWriter:
    """Scored chunks appended in order to `out` (Parquet, or CSV by its suffix) under a temporary name in
    the same directory; `close` renames the whole file into place, `discard` removes a file left
    unfinished. A column that is all null in the first chunk (no tier drove a decision yet) is written
    as text, as later chunks hold it."""

    def __init__(self, out: Path):
        self.out = out
        self.partial = out.with_name(f".{out.name}.partial")
        self.csv = out.suffix.lower() == ".csv"
        self.rows = 0
        self._parquet: Any = None
        self._schema: Any = None

    def write(self, scored: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.rows == 0 and self._parquet is None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.csv:
            scored.to_csv(self.partial, index=False, mode="a" if self.rows else "w", header=not self.rows)
        else:
            if self._schema is None:
                self._schema = output_schema(scored)
                self._parquet = pq.ParquetWriter(self.partial, self._schema)
            self._parquet.write_table(pa.Table.from_pandas(scored, schema=self._schema, preserve_index=False))
        self.rows += len(scored)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        os.replace(self.partial, self.out)

    def discard(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        self.partial.unlink(missing_ok=True)
