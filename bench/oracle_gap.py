"""How close is the model to the limit? Workload at the default targets: model against oracle.

The oracle ranks the same calibration listings by the generator's true probability of rejection;
the same guaranteed-threshold procedure runs on both, so the queue-share ratio is the price of not
knowing what the generator knows.

Usage: python bench/oracle_gap.py --bundle models/latest --oracle data/generated/oracle.parquet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from bundle.manifest import resolve_bundle
from decision.thresholds import choose_policy_thresholds


def _test_aucs(bundle: Path, oracle: pd.DataFrame) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    test = pd.read_parquet(bundle / "test_scores.parquet").merge(oracle, on="listing_id", validate="one_to_one")
    return {
        name: round(float(roc_auc_score(test["label"], test[column])), 4)
        for name, column in (("model", "risk"), ("baseline", "baseline_risk"), ("oracle", "true_risk"))
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, default=Path("models/latest"))
    parser.add_argument("--oracle", type=Path, default=Path("data/generated/oracle.parquet"))
    parser.add_argument("--recall", type=float, default=0.99)
    parser.add_argument("--block-precision", type=float, default=0.98)
    args = parser.parse_args()
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
