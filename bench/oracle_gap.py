"""How close is the model to the limit? Workload at the default targets: model against oracle.

The oracle ranks the same calibration listings by the generator's true probability of rejection;
the same guaranteed-threshold procedure runs on both, so the queue-share ratio is the price of not
knowing what the generator knows.

With `--generated DIR` (no bundle needed) it compares the two oracles of `triage generate` on the
newest 20% of rows (the test split): `true_risk` (knows the per-listing ambiguity term) and
`limit_risk` (the ambiguity integrated out: what a model of the listing's columns can reach). For
each: ROC-AUC against the label, and at recall 0.95 and 0.99 the share of rows auto-passed
(risk < t, t the largest threshold keeping that recall on these labels, no slack).

Usage: python bench/oracle_gap.py --bundle models/latest --oracle data/generated/oracle.parquet
       python bench/oracle_gap.py --generated data/generated [data/other-seed ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bundle.manifest import resolve_bundle
from decision.thresholds import choose_policy_thresholds
from features.config import DataConfig
from training.split import split_by_time

RECALLS = (0.95, 0.99)


def _test_aucs(bundle: Path, oracle: pd.DataFrame) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    test = pd.read_parquet(bundle / "test_scores.parquet").merge(oracle, on="listing_id", validate="one_to_one")
    return {
        name: round(float(roc_auc_score(test["label"], test[column])), 4)
        for name, column in (("model", "risk"), ("baseline", "baseline_risk"), ("oracle", "true_risk"))
    }


def pass_share_at_recall(risk: np.ndarray, label: np.ndarray, recall: float) -> float:
    """Share of rows with risk < t, t the largest threshold that keeps recall >= `recall` on `label`."""
    violating = np.sort(risk[label == 1])
    allowed_misses = int(np.floor((1.0 - recall) * len(violating) + 1e-9))
    t_pass = violating[allowed_misses]  # at most `allowed_misses` violations have risk < t_pass
    return float((risk < t_pass).mean())


def oracle_limits(generated: Path) -> dict[str, float]:
    """ROC-AUC and pass shares at RECALLS of true_risk and limit_risk on a generated set's test split."""
    from sklearn.metrics import roc_auc_score

    reviews = pd.read_parquet(generated / "reviews.parquet", columns=["listing_id", "created_at", "label"])
    oracle = pd.read_parquet(generated / "oracle.parquet", columns=["listing_id", "true_risk", "limit_risk"])
    test = split_by_time(reviews.merge(oracle, on="listing_id", validate="one_to_one"), DataConfig()).test
    label = test["label"].to_numpy()
    row: dict[str, float] = {"test_rows": len(test)}
    for column in ("true_risk", "limit_risk"):
        risk = test[column].to_numpy()
        row[f"{column}_roc_auc"] = float(roc_auc_score(label, risk))
        for recall in RECALLS:
            row[f"{column}_pass_share@{recall}"] = pass_share_at_recall(risk, label, recall)
    return row


def _compare_oracles(dirs: list[Path]) -> None:
    table = pd.DataFrame({str(d): oracle_limits(d) for d in dirs}).T
    if len(table) > 1:
        table.loc["mean"] = table.mean()
    print(table.T.to_string(float_format=lambda v: f"{v:.4f}"))
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "oracle_limits.json").write_text(table.to_json(orient="index", indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, default=Path("models/latest"))
    parser.add_argument("--oracle", type=Path, default=Path("data/generated/oracle.parquet"))
    parser.add_argument("--recall", type=float, default=0.99)
    parser.add_argument("--block-precision", type=float, default=0.98)
    parser.add_argument("--generated", type=Path, nargs="+", help="`triage generate` output dirs: oracles only")
    args = parser.parse_args()
    if args.generated:
        _compare_oracles(args.generated)
        return
    reference = pd.read_parquet(resolve_bundle(args.bundle) / "reference.parquet")
    oracle = pd.read_parquet(args.oracle)[["listing_id", "true_risk"]]
    joined = reference.merge(oracle, on="listing_id", how="inner", validate="one_to_one")
    if len(joined) != len(reference):
        raise SystemExit(f"oracle covers {len(joined)} of {len(reference)} reference listings")
    rows = {}
    for name, risk in (("model", joined["risk"]), ("oracle", joined["true_risk"])):
        result = choose_policy_thresholds(
            joined.assign(risk=risk), recall=args.recall, block_precision=args.block_precision
        )
        point = result.to_dict()["achieved"]
        rows[name] = {
            "feasible": result.feasible,
            "t_pass": result.t_pass,
            "t_block": result.t_block,
            "queue_share": point["queue_share"],
            "reviewer_hours": point["reviewer_hours"],
            "recall": point["recall"],
            "block_precision": point["block_precision"],
        }
    rows["ratio model/oracle"] = {
        "queue_share": rows["model"]["queue_share"] / max(rows["oracle"]["queue_share"], 1e-12),
        "reviewer_hours": rows["model"]["reviewer_hours"] / max(rows["oracle"]["reviewer_hours"], 1e-12),
    }
    print(pd.DataFrame(rows).T.to_string())
    rows["test_roc_auc"] = _test_aucs(resolve_bundle(args.bundle), oracle)
    print("\ntest-split ROC-AUC:", json.dumps(rows["test_roc_auc"]))
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "oracle_gap.json").write_text(json.dumps(rows, indent=2, default=float))


if __name__ == "__main__":
    main()
