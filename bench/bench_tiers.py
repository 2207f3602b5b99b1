"""Tiered policies against the reachable limit: `make bench-tiers` -> bench/results_tiers.json.

    python bench/bench_tiers.py [--rows 200000] [--seeds 0 1 2] [--trials N]
        [--validity-seeds 100 ... 119] [--validity-rows 80000] [--validity-trials 4]
        [--skip-tiered] [--skip-validity] [--skip-single] [--workdir DIR] [--out JSON] [--report | --rescore]

Built-in data only (the oracle is needed). Per seed, `triage generate`'s data is trained twice with the
pipeline (`training.pipeline.train`, no MLflow): with the default tiers (severe recall 0.99, minor 0.90,
block precision 0.98) and with `tiers=False` (recall 0.99 over every violation, block precision 0.98).
Each bundle's test split (test_scores.parquet) is routed, thresholds only (no review rules), by:
- model, certified on calibration: the bundle's `thresholds_evaluated` (the test rows are held out);
- model, shipped: the bundle's `thresholds`, certified on calibration + test (in-sample for these rows);
- limit: oracle.parquet's `limit_risk` (per tier: the sum of its reasons' `limit_risk_<reason>`);
- oracle: `true_risk` (per tier: the sum of `true_risk_<reason>`);
the limit's and the oracle's thresholds chosen on the test split itself with no slack: each tier's
threshold lets through exactly as many of its test violations as its recall target allows, and the block
threshold is the lowest whose test block precision reaches the target (`no_slack_thresholds`).
Targets: the model's auto-decided share (auto-pass + auto-block) >= 0.8x the limit's, per policy.

Validity: 20 fresh seeds at 80k rows, default tiers, a small search budget; per seed, whether every target
the calibration-only thresholds certify holds on the test split, judged by the oracle's expectation
(expected recall of a tier = 1 - its true risk over auto-passed rows / over all rows; expected block
precision = mean true risk of the blocked rows) and by the test labels. Target: all hold in >= 95% of seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, log, run_meta  # noqa: E402
from bench.tiers_report import render  # noqa: E402
from decision.policy import CODE_BLOCK, CODE_PASS, route  # noqa: E402
from decision.tiers import NO_TIER, risk_column  # noqa: E402
from features.config import MARKETPLACE_TIERS  # noqa: E402
from training.generate import write_dataset  # noqa: E402
from training.pipeline import TrainOptions, train  # noqa: E402

RESULTS_JSON = ROOT / "bench" / "results_tiers.json"
BLOCK_PRECISION = 0.98
SINGLE_RECALL = 0.99
ALL = "all"  # the one tier of the single-target policy
TIERED_TARGETS = {t.name: t.recall for t in MARKETPLACE_TIERS}
TIER_REASONS = {t.name: t.reasons for t in MARKETPLACE_TIERS}


@dataclass(frozen=True)
class Thresholds:
    """A routing: overall t_pass / t_block, and each tier's t_pass (passing needs every tier below its own)."""

    t_pass: float
    t_block: float
    tier_pass: dict[str, float]

    @classmethod
    def from_metrics(cls, thresholds: dict[str, Any]) -> Thresholds:
        """From a bundle's metrics.json `thresholds` / `thresholds_evaluated`."""
        tier_pass = {t["name"]: t["t_pass"] for t in thresholds.get("tiers") or []}
        return cls(float(thresholds["t_pass"]), float(thresholds["t_block"]), tier_pass)


@dataclass(frozen=True)
class Scored:
    """One scorer's risks on the test rows: overall, and per tier (the tier names are the targets' keys)."""

    risk: np.ndarray
    tier_risk: dict[str, np.ndarray]


# --- thresholds with no slack, on the rows they are judged on ------------------------------------------------


def allowed_misses(n_violating: int, recall: float) -> int:
    """Most violations a recall target lets through: floor((1 - R) n), robust to float rounding."""
    return int(math.floor((1.0 - recall) * n_violating + 1e-9))


def pass_threshold_no_slack(score: np.ndarray, violating: np.ndarray, recall: float) -> float:
    """Highest t with at most the allowed misses strictly below it (score < t passes); inf: no violations."""
    ranked = np.sort(np.asarray(score, dtype=np.float64)[np.asarray(violating, dtype=bool)])
    m = allowed_misses(len(ranked), recall)
    return float(ranked[m]) if m < len(ranked) else math.inf


def block_threshold_no_slack(score: np.ndarray, label: np.ndarray, precision: float) -> float:
    """Lowest t whose block set (score >= t) has precision >= target on these labels; inf: none has."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    ranked, hits = np.asarray(score, dtype=np.float64)[order], np.asarray(label, dtype=np.int64)[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # last row of each run of tied scores
    ok = np.cumsum(hits)[ends] >= precision * (ends + 1) - 1e-9
    return float(ranked[ends[ok][-1]]) if ok.any() else math.inf


def no_slack_thresholds(
    scored: Scored, label: np.ndarray, tier_of_row: np.ndarray, targets: dict[str, float], block_precision: float
) -> Thresholds:
    """The limit's (or oracle's) best routing at these targets, chosen on the rows it is judged on."""
    t_block = block_threshold_no_slack(scored.risk, label, block_precision)
    tier_pass = {
        name: pass_threshold_no_slack(scored.tier_risk[name], tier_of_row == name, recall)
        for name, recall in targets.items()
    }
    return Thresholds(t_block, t_block, tier_pass)  # passing is limited by the tiers, as in the product


# --- routing and what it achieves -------------------------------------------------------------------------


def route_scored(scored: Scored, thresholds: Thresholds) -> np.ndarray:
    names = list(thresholds.tier_pass)
    tier_risk = np.column_stack([scored.tier_risk[n] for n in names]) if names else None
    tier_pass = np.array([thresholds.tier_pass[n] for n in names]) if names else None
    return route(scored.risk, thresholds.t_pass, thresholds.t_block, tier_risk=tier_risk, tier_pass=tier_pass)


def achieved(
    codes: np.ndarray,
    label: np.ndarray,
    tier_of_row: np.ndarray,
    targets: dict[str, float],
    block_precision: float,
    expected: Scored | None = None,
) -> dict[str, Any]:
    """Shares, each tier's recall and block precision on the test labels (and, with the oracle's true risks
    as `expected`, in expectation), and whether every target holds."""
    passed, blocked = codes == CODE_PASS, codes == CODE_BLOCK
    out: dict[str, Any] = {
        "auto_pass_share": float(passed.mean()),
        "auto_block_share": float(blocked.mean()),
        "auto_decided_share": float(passed.mean() + blocked.mean()),
        "recall": {n: _share_caught(tier_of_row == n, passed) for n in targets},
        "block_precision": float(label[blocked].mean()) if blocked.any() else None,
    }
    out["holds_labels"] = _holds(out["recall"], out["block_precision"], targets, block_precision)
    if expected is not None:
        out["expected_recall"] = {n: _share_caught(expected.tier_risk[n], passed) for n in targets}
        out["expected_block_precision"] = float(expected.risk[blocked].mean()) if blocked.any() else None
        out["holds_expected"] = _holds(
            out["expected_recall"], out["expected_block_precision"], targets, block_precision
        )
    return out


def _share_caught(weight: np.ndarray, passed: np.ndarray) -> float | None:
    """1 - (weight of passed rows) / (weight of all rows): recall for 0/1 weights, expected recall for risks."""
    weight = np.asarray(weight, dtype=np.float64)
    total = weight.sum()
    return float(1.0 - weight[passed].sum() / total) if total > 0 else None


def _holds(
    recall: dict[str, float | None], precision: float | None, targets: dict[str, float], block_precision: float
) -> dict[str, bool]:
    holds = {n: _at_least(recall[n], targets[n]) for n in targets}
    holds["block_precision"] = _at_least(precision, block_precision)
    return holds


def _at_least(value: float | None, target: float) -> bool:
    """A target holds when its figure reaches it; with nothing to count (no violations, nothing blocked) too."""
    return value is None or value >= target - 1e-12


# --- the test split of one bundle, with the oracle ------------------------------------------------------------


def joined_test_split(bundle: Path, oracle: Path) -> pd.DataFrame:
    """The bundle's test_scores.parquet joined on listing_id with the oracle's risks."""
    test = pd.read_parquet(bundle / "test_scores.parquet")
    test["listing_id"] = test["listing_id"].astype(str)
    table = pd.read_parquet(oracle)
    table["listing_id"] = table["listing_id"].astype(str)
    joined = test.merge(table, on="listing_id", how="left", validate="one_to_one")
    if joined["limit_risk"].isna().any():
        raise SystemExit(f"{oracle} does not cover every test listing of {bundle}")
    return joined


def oracle_scored(rows: pd.DataFrame, kind: str, tiered: bool) -> Scored:
    """`kind` "limit" or "true": the oracle's overall risk and its per-tier sums of reason risks."""
    risk = rows[f"{kind}_risk"].to_numpy(dtype=np.float64)
    if not tiered:
        return Scored(risk, {ALL: risk})
    return Scored(
        risk,
        {
            name: rows[[f"{kind}_risk_{r}" for r in reasons]].sum(axis=1).to_numpy(dtype=np.float64)
            for name, reasons in TIER_REASONS.items()
        },
    )


def model_scored(rows: pd.DataFrame, tiered: bool) -> Scored:
    risk = rows["risk"].to_numpy(dtype=np.float64)
    if not tiered:
        return Scored(risk, {ALL: risk})  # a bundle's single-target thresholds name no tier
    return Scored(risk, {name: rows[risk_column(name)].to_numpy(dtype=np.float64) for name in TIER_REASONS})


def tier_of_rows(rows: pd.DataFrame, tiered: bool) -> np.ndarray:
    if tiered:
        return rows["tier"].to_numpy(dtype=object)
    return np.where(rows["label"].to_numpy() == 1, ALL, NO_TIER).astype(object)


def compare(bundle: Path, oracle: Path, tiered: bool) -> dict[str, Any]:
    """Every scorer's routing of the bundle's test split at the policy's targets (see the module docstring)."""
    rows = joined_test_split(bundle, oracle)
    metrics = json.loads((bundle / "metrics.json").read_text())
    label = rows["label"].to_numpy(dtype=np.int64)
    tiers = tier_of_rows(rows, tiered)
    targets = dict(TIERED_TARGETS) if tiered else {ALL: SINGLE_RECALL}
    truth = oracle_scored(rows, "true", tiered)
    model = model_scored(rows, tiered)
    routings = {
        "model_calibration": (
            model,
            Thresholds.from_metrics(metrics.get("thresholds_evaluated", metrics["thresholds"])),
        ),
        "model_shipped": (model, Thresholds.from_metrics(metrics["thresholds"])),
    }
    # the model's own risks with the limit's treatment (no slack, fitted to the test labels): what its
    # ranking alone reaches; the rest of its gap to the limit is the price of certifying on held-out rows
    routings["model_no_slack"] = (model, no_slack_thresholds(model, label, tiers, targets, BLOCK_PRECISION))
    for scorer, kind in (("limit", "limit"), ("oracle", "true")):
        scored = oracle_scored(rows, kind, tiered)
        routings[scorer] = (scored, no_slack_thresholds(scored, label, tiers, targets, BLOCK_PRECISION))
    scorers = {
        name: {
            **achieved(route_scored(scored, th), label, tiers, targets, BLOCK_PRECISION, truth),
            "thresholds": {"t_pass": th.t_pass, "t_block": th.t_block, "tier_pass": th.tier_pass},
        }
        for name, (scored, th) in routings.items()
    }
    limit = scorers["limit"]["auto_decided_share"]
    for figures in scorers.values():
        figures["ratio_to_limit"] = figures["auto_decided_share"] / limit if limit > 0 else None
    return {
        "policy": "tiered" if tiered else "single",
        "targets": {"recall": targets, "block_precision": BLOCK_PRECISION},
        "test_rows": len(rows),
        "test_violations": {n: int((tiers == n).sum()) for n in targets},
        "scorers": scorers,
        "model_with_rules_calibration": _with_rules(metrics),
        "certification": _certification(metrics),
    }


def _with_rules(metrics: dict[str, Any]) -> dict[str, float]:
    """The pipeline's own test routing (calibration-certified thresholds plus the default review rules)."""
    routing = metrics["test"]["routing"]
    return {k: routing[k] for k in ("auto_pass_share", "auto_block_share", "auto_decided_share")}


def _certification(metrics: dict[str, Any]) -> dict[str, Any]:
    """Per threshold set: feasible, block certified, and each tier's violations vs those needed."""
    out: dict[str, Any] = {}
    for key in ("thresholds_evaluated", "thresholds"):
        if key not in metrics:
            continue
        th = metrics[key]
        out[key] = {
            "feasible": th["feasible"],
            "block_certified": not any("no auto-block" in note for note in th["notes"]),
            "rows": th["n"],
            "violations": th["n_violating"],
            "tiers": {
                t["name"]: {k: t[k] for k in ("n_violating", "violations_needed", "best_certifiable_recall")}
                for t in th["tiers"]
            },
        }
    return out


# --- runs -------------------------------------------------------------------------------------------------


def generate(rows: int, seed: int, workdir: Path) -> Path:
    data_dir = workdir / f"builtin-{rows}-seed{seed}"
    if not (data_dir / "oracle.parquet").exists():
        log(f"generating {rows:,} rows, seed {seed}")
        write_dataset(data_dir, rows=rows, seed=seed)
    return data_dir


def run_policy(
    data_dir: Path, seed: int, tiered: bool, trials: int | None, out: Path, plan_alpha_split: bool = True
) -> dict[str, Any]:
    """Train one bundle on the generated data and compare it with the limit on its test split."""
    options = TrainOptions(
        plan_alpha_split=plan_alpha_split,
        data=data_dir / "reviews.parquet",
        out=out,
        seed=seed,
        tiers=tiered,
        recall=SINGLE_RECALL,
        block_precision=BLOCK_PRECISION,
        log_mlflow=False,
        show_progress=False,
    )
    if trials is not None:
        options.search_trials = trials
    started = time.perf_counter()
    bundle = train(options).bundle_dir
    result = compare(bundle, data_dir / "oracle.parquet", tiered)
    result.update(
        bundle=str(bundle),
        oracle=str(data_dir / "oracle.parquet"),
        seed=seed,
        rows=len(pd.read_parquet(data_dir / "oracle.parquet", columns=["listing_id"])),
        search_trials=options.search_trials,
        alpha_split=json.loads((bundle / "metrics.json").read_text()).get("alpha_split"),
        train_seconds=round(time.perf_counter() - started, 1),
    )
    return result


def validity_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Share of seeds where every target the calibration-certified thresholds promise holds."""
    model = [r["scorers"]["model_calibration"] for r in runs]
    feasible = [r["certification"]["thresholds_evaluated"]["feasible"] for r in runs]
    out: dict[str, Any] = {"seeds": [r["seed"] for r in runs], "feasible_seeds": int(sum(feasible))}
    for judge in ("expected", "labels"):
        held = [all(m[f"holds_{judge}"].values()) for m in model]
        out[f"share_all_hold_{judge}"] = float(np.mean(held)) if held else None
        out[f"failed_seeds_{judge}"] = [r["seed"] for r, h in zip(runs, held, strict=True) if not h]
    return out


def rescore(results: dict[str, Any]) -> dict[str, Any]:
    """Every run of a results file compared again from its kept bundle (`--workdir`), e.g. after a new measure."""
    for part in ("tiered", "validity", "single"):
        for i, run in enumerate(results.get(part, [])):
            fresh = compare(Path(run["bundle"]), Path(run["oracle"]), part != "single")
            results[part][i] = {**run, **fresh}
    if results.get("validity"):
        results["validity_summary"] = validity_summary(results["validity"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per seed of the main runs")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="seeds of the main runs")
    parser.add_argument("--trials", type=int, default=None, help="main runs' search trials (default: training's)")
    parser.add_argument("--validity-seeds", type=int, nargs="*", default=list(range(100, 120)))
    # 80k: the calibration split then holds about 550 severe violations; recall 0.99 at alpha = 0.05 / 4 needs
    # 437, and at 60k (about 380) nothing can be certified, so the check would be vacuous
    parser.add_argument("--validity-rows", type=int, default=80_000)
    parser.add_argument("--validity-trials", type=int, default=4, help="search trials of the validity runs")
    parser.add_argument("--skip-tiered", action="store_true", help="no tiered runs on --seeds")
    parser.add_argument("--skip-validity", action="store_true")
    parser.add_argument("--skip-single", action="store_true", help="no single-target (tiers=False) runs")
    parser.add_argument(
        "--default-alpha-split",
        action="store_true",
        help="certify with the fixed split of delta (half to block precision), not the one training plans",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_JSON, help="results JSON (rewritten after every run)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep data and bundles here (default: a temp dir)")
    parser.add_argument("--report", action="store_true", help="only print the table of an existing --out")
    parser.add_argument("--rescore", action="store_true", help="compare the kept bundles of --out again, no training")
    args = parser.parse_args()
    if args.report or args.rescore:
        results = json.loads(args.out.read_text())
        if args.rescore:
            results = rescore(results)
            args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
        print(render(results))
        return
    start = time.perf_counter()
    plan = not args.default_alpha_split
    results = {"meta": run_meta("bench/bench_tiers.py", start), "tiered": [], "validity": [], "single": []}
    with tempfile.TemporaryDirectory(prefix="bench-tiers-") as tmp:
        workdir = args.workdir or Path(tmp)

        def save() -> None:
            results["meta"] = run_meta("bench/bench_tiers.py", start)
            if results["validity"]:
                results["validity_summary"] = validity_summary(results["validity"])
            args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")

        # the priorities: tiered at full size, then validity, then the single target
        for seed in [] if args.skip_tiered else args.seeds:
            log(f"tiered policy, {args.rows:,} rows, seed {seed}")
            results["tiered"].append(
                run_policy(generate(args.rows, seed, workdir), seed, True, args.trials, workdir / "models", plan)
            )
            save()
        for seed in [] if args.skip_validity else args.validity_seeds:
            log(f"validity, {args.validity_rows:,} rows, seed {seed}")
            data_dir = generate(args.validity_rows, seed, workdir)
            results["validity"].append(run_policy(data_dir, seed, True, args.validity_trials, workdir / "models", plan))
            save()
        for seed in [] if args.skip_single else args.seeds:
            log(f"single target, {args.rows:,} rows, seed {seed}")
            results["single"].append(
                run_policy(generate(args.rows, seed, workdir), seed, False, args.trials, workdir / "models", plan)
            )
            save()
    print(render(results))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
