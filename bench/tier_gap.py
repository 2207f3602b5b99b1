"""Where a tiered bundle falls short of the reachable limit, tier by tier (a diagnostic for bench_tiers).

    python bench/tier_gap.py --bundle models/latest --data data/generated [--bundle ... --data ...]

For each bundle, on its test split joined with the generator's oracle (`data/oracle.parquet`):

1. each tier alone: the share of listings its own risk could pass at the tier's recall target, no slack
   (threshold fitted to these labels), for the model and for the limit (`limit_risk_<reason>` summed over
   the tier's reasons): the tier whose share is lowest binds the joint policy;
2. the minor tier's ROC-AUC by how many earlier listings the merchant had when the listing was created
   (0, 1-4, 5-19, 20-99, 100+), model against limit and oracle: the limit knows each merchant's latent
   quality, which a history of rare rejections reveals slowly;
3. the severe violations the model ranks lowest, with their reason and title.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_tiers import TIER_REASONS, TIERED_TARGETS, joined_test_split, pass_threshold_no_slack  # noqa: E402
from decision.tiers import risk_column  # noqa: E402

BUCKETS = ((0, 1), (1, 5), (5, 20), (20, 100), (100, None))


def tier_alone(rows: pd.DataFrame) -> pd.DataFrame:
    """Per tier: the share its own risk passes at its target, no slack, for the model and the limit."""
    out = []
    for tier, recall in TIERED_TARGETS.items():
        violating = rows["tier"].to_numpy() == tier
        limit = rows[[f"limit_risk_{r}" for r in TIER_REASONS[tier]]].sum(axis=1).to_numpy()
        shares = {}
        for name, risk in (("model", rows[risk_column(tier)].to_numpy()), ("limit", limit)):
            shares[name] = float((risk < pass_threshold_no_slack(risk, violating, recall)).mean())
        out.append({"tier": tier, "recall": recall, **shares, "violations": int(violating.sum())})
    return pd.DataFrame(out)


def prior_listings(rows: pd.DataFrame, reviews: pd.DataFrame) -> np.ndarray:
    """How many listings each test row's merchant created before it (the whole history, in time order)."""
    ordered = reviews[["listing_id", "merchant_id", "created_at"]].sort_values("created_at", kind="stable")
    ordered["prior"] = ordered.groupby("merchant_id").cumcount()
    return rows[["listing_id"]].merge(ordered, on="listing_id", how="left")["prior"].to_numpy()


def minor_auc_by_history(rows: pd.DataFrame, prior: np.ndarray) -> pd.DataFrame:
    from sklearn.metrics import roc_auc_score

    out = []
    for lo, hi in BUCKETS:
        inside = (prior >= lo) & (prior < (hi if hi is not None else np.inf))
        part = rows[inside]
        y = (part["tier"] == "minor").to_numpy()
        if y.all() or not y.any():
            continue
        out.append(
            {
                "earlier listings": f"{lo}+" if hi is None else (f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}"),
                "rows": len(part),
                "minor rate": round(float(y.mean()), 4),
                **{
                    f"AUC {name}": round(float(roc_auc_score(y, part[column])), 4)
                    for name, column in (
                        ("model", risk_column("minor")),
                        ("limit", "limit_risk_other"),
                        ("oracle", "true_risk_other"),
                    )
                },
            }
        )
    return pd.DataFrame(out)


def markdown(frame: pd.DataFrame) -> str:
    """A frame as a markdown table (floats to 4 significant digits)."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, action="append", required=True)
    parser.add_argument("--data", type=Path, action="append", required=True, help="generated data of each bundle")
    parser.add_argument("--lowest", type=int, default=10, help="severe violations to list")
    args = parser.parse_args()
    if len(args.bundle) != len(args.data):
        parser.error("give one --data per --bundle")
    pd.set_option("display.width", 200)
    for bundle, data in zip(args.bundle, args.data, strict=True):
        rows = joined_test_split(bundle, data / "oracle.parquet")
        columns = ["listing_id", "merchant_id", "created_at", "title", "violation_reason"]
        reviews = pd.read_parquet(data / "reviews.parquet", columns=columns)
        rows = rows.merge(reviews[["listing_id", "title", "violation_reason"]], on="listing_id", how="left")
        print(f"## {bundle}\n\nEach tier alone (share passed at its target, no slack):\n")
        print(markdown(tier_alone(rows)))
        print("\nMinor tier ROC-AUC by the merchant's earlier listings:\n")
        print(markdown(minor_auc_by_history(rows, prior_listings(rows, reviews))))
        severe = rows[rows["tier"] == "severe"].sort_values(risk_column("severe")).head(args.lowest)
        print(f"\nThe {args.lowest} severe violations the model ranks lowest:\n")
        columns = [risk_column("severe"), "limit_risk", "violation_reason", "title"]
        print(markdown(severe[columns]))
        print()


if __name__ == "__main__":
    main()
