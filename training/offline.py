"""Offline use of an exported bundle: evaluation on labelled data and batch scoring of files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from bundle.load import Bundle
from decision.policy import decision_names, route
from decision.rules import match_rules
from features.validate import load_table, validate_history, validate_listings
from training.evaluate import evaluate_scores

SCORE_CHUNK_ROWS = 200_000


def evaluate_bundle(bundle_path: Path, data: Path, oracle: Path | None = None) -> dict[str, Any]:
    """Metrics of a bundle on labelled rows; with an oracle, the oracle's ROC-AUC on the same rows."""
    bundle = Bundle.load(bundle_path)
    config = bundle.config
    table = validate_history(load_table(data, config), config)
    risk = bundle.risk(table, history=table)
    frame = pd.DataFrame({"label": table[config.label].to_numpy(), "risk": risk})
    if config.review_seconds and config.review_seconds in table:
        frame["review_seconds"] = table[config.review_seconds].to_numpy(dtype=np.float64)
    for column in config.segments:
        frame[column] = table[column].astype(str).to_numpy()
    rule_block, rule_review, _ = match_rules(table, bundle.policy.rules)
    metrics: dict[str, Any] = {
        "bundle": bundle.version,
        "data": str(data),
        **evaluate_scores(frame, bundle.policy, config.segments, (rule_block, rule_review)),
    }
    if oracle is not None:
        truth = pd.read_parquet(oracle)
        joined = table[[config.id]].merge(truth, left_on=config.id, right_on="listing_id", how="left")
        missing = int(joined["true_risk"].isna().sum())
        if missing:
            raise ValueError(f"oracle {oracle}: {missing} listings of {data} have no true_risk")
        metrics["oracle_roc_auc"] = float(roc_auc_score(frame["label"], joined["true_risk"]))
    return metrics


def decide(bundle: Bundle, listings: pd.DataFrame, risk: np.ndarray) -> np.ndarray:
    """Route scored listings with the bundle's policy (rules, then per-segment thresholds)."""
    policy = bundle.policy
    t_pass: np.ndarray | float
    t_block: np.ndarray | float
    if policy.segment_by:
        t_pass, t_block = policy.thresholds_for(listings[policy.segment_by].astype(str).to_numpy())
    else:
        t_pass, t_block = policy.t_pass, policy.t_block
    rule_block, rule_review, _ = match_rules(listings, policy.rules)
    return route(risk, t_pass, t_block, rule_block, rule_review)


def score_frame(bundle: Bundle, listings: pd.DataFrame) -> pd.DataFrame:
    """Listing id, calibrated risk and decision for validated listings (what `triage score` writes and
    the registered MLflow model returns)."""
    risk = bundle.risk(listings)
    return pd.DataFrame(
        {
            bundle.config.id: listings[bundle.config.id].to_numpy(),
            "risk": risk,
            "decision": decision_names(decide(bundle, listings, risk)),
        }
    )


def score_file(bundle_path: Path, data: Path, out: Path) -> dict[str, Any]:
    """Score every listing of a file in chunks; write listing id, risk and decision."""
    start = time.perf_counter()
    bundle = Bundle.load(bundle_path, threads=0)
    config = bundle.config
    listings = validate_listings(load_table(data, config), config)
    parts = []
    for lo in range(0, len(listings), SCORE_CHUNK_ROWS):
        parts.append(score_frame(bundle, listings.iloc[lo : lo + SCORE_CHUNK_ROWS]))
    scored = pd.concat(parts, ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        scored.to_csv(out, index=False)
    else:
        scored.to_parquet(out, index=False)
    seconds = time.perf_counter() - start
    return {
        "rows": len(scored),
        "seconds": round(seconds, 2),
        "rows_per_second": round(len(scored) / seconds),
        "out": str(out),
        "decisions": scored["decision"].value_counts().to_dict(),
    }
