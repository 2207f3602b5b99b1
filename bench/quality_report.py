"""The report of `make bench-quality`: one table per dataset, the targets met or not, results files.

Targets on every dataset: model ROC-AUC >= max(baseline, reference) - AUC_TOLERANCE and review share at
recall 0.95 within REVIEW_SHARE_FACTOR x the reference's; on built-in data the gap to the reachable limit
(`limit_risk`) and to the oracle (`true_risk`) is reported, with no target.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bench.common import ROOT

RESULTS_MD = ROOT / "bench" / "results_quality.md"
RESULTS_JSON = ROOT / "bench" / "results_quality.json"
RECALLS = (0.95, 0.99)
AUC_TOLERANCE = 0.005
REVIEW_SHARE_FACTOR = 1.10
ORACLE_SCORERS = {"limit": "limit_risk", "oracle": "true_risk"}  # scorer -> oracle.parquet column


def first_words(message: str, limit: int = 90) -> str:
    line = message.splitlines()[0] if message else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_targets(result: dict[str, Any]) -> list[str]:
    """The issue's targets for one dataset, each MET / NOT MET with its numbers (n/a when a scorer is missing)."""
    s = result["scorers"]
    if "model" not in s or "reference" not in s:
        missing = result["unavailable"].get("model", "n/a (no reference)")
        return [
            f"- n/a: model ROC-AUC >= max(baseline, reference) - {AUC_TOLERANCE}: {missing}",
            f"- n/a: review share at recall 0.95 <= {REVIEW_SHARE_FACTOR:.2f}x the reference's: {missing}",
        ]
    model, reference = s["model"], s["reference"]
    baseline_auc = s["baseline"]["roc_auc"] if "baseline" in s else float("nan")
    bar = np.nanmax([baseline_auc, reference["roc_auc"]]) - AUC_TOLERANCE
    auc_ok = model["roc_auc"] >= bar
    share, ref_share = model["review_share@0.95"], reference["review_share@0.95"]
    share_ok = share <= REVIEW_SHARE_FACTOR * ref_share
    lines = [
        f"- {'MET' if auc_ok else 'NOT MET'}: model ROC-AUC >= max(baseline, reference) - {AUC_TOLERANCE}: "
        f"{model['roc_auc']:.4f} vs {bar:.4f} (baseline {baseline_auc:.4f}, "
        f"reference {reference['roc_auc']:.4f})",
        f"- {'MET' if share_ok else 'NOT MET'}: review share at recall 0.95 <= {REVIEW_SHARE_FACTOR:.2f}x the "
        f"reference's: {share:.2%} vs {ref_share:.2%} ({share / ref_share:.2f}x)",
    ]
    if "oracle" in s or "limit" in s or "limit" in result["unavailable"]:
        lines += _limit_gap(result)
    return lines


def _limit_gap(result: dict[str, Any]) -> list[str]:
    """Built-in data: how far the model is from the reachable limit and from the oracle (no target)."""
    s, lines = result["scorers"], []
    for scorer in ORACLE_SCORERS:
        if scorer not in s:
            lines.append(f"- gap to the {scorer}: {result['unavailable'].get(scorer, 'n/a (not available)')}")
            continue
        shares = ", ".join(
            f"{s['model'][f'review_share@{r}']:.2%} vs {s[scorer][f'review_share@{r}']:.2%} "
            f"({s['model'][f'review_share@{r}'] / s[scorer][f'review_share@{r}']:.2f}x) at recall {r}"
            for r in RECALLS
        )
        lines.append(
            f"- gap to the {scorer} ({ORACLE_SCORERS[scorer]}): ROC-AUC {s['model']['roc_auc']:.4f} vs "
            f"{s[scorer]['roc_auc']:.4f} ({s['model']['roc_auc'] - s[scorer]['roc_auc']:+.4f}); review share {shares}"
        )
    return lines


def table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| scorer | ROC-AUC | PR-AUC | review share @ recall 0.95 | review share @ recall 0.99 |",
        "|---|---|---|---|---|",
    ]
    for scorer, m in result["scorers"].items():
        lines.append(
            f"| {scorer} | {m['roc_auc']:.4f} | {m['pr_auc']:.4f} | {m['review_share@0.95']:.2%} | "
            f"{m['review_share@0.99']:.2%} |"
        )
    for scorer, why in result["unavailable"].items():
        lines.append(f"| {scorer} | {why} | | | |")
    return lines


def section(result: dict[str, Any]) -> list[str]:
    lines = [f"### {result['dataset']}", ""]
    if "split_sizes" in result:
        sizes = result["split_sizes"]
        lines += [
            f"{result['rows']:,} rows; train part {sizes['train']:,}, test {sizes['test']:,} "
            f"({sizes['test_positives']:,} violations); split: {result['split']}; reference text weight "
            f"{result['reference_text_weight']:.1f}; train {result['train_seconds']:.0f} s, reference "
            f"{result['reference_seconds']:.0f} s" + _selection_note(result.get("selection")),
            "",
        ]
    return lines + table(result) + ["", *check_targets(result), ""]


def _selection_note(selection: Any) -> str:
    """metrics.json's `selection` section in a few words (in full in the JSON results)."""
    if not selection:
        return ""
    if isinstance(selection, dict) and "chosen" in selection:
        return f"; model selection chose `{selection['chosen']}`"
    return f"; model selection: `{first_words(json.dumps(selection, default=str), 160)}`"


def write_results(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    RESULTS_JSON.write_text(json.dumps({"meta": meta, "datasets": results}, indent=2, default=float) + "\n")
    lines = [
        "# Model quality benchmark",
        "",
        f"`make bench-quality` ({meta['command']}) on {meta['machine']}, {meta['finished_at']}, "
        f"{meta['seconds'] / 60:.1f} min. Test split of each dataset; review share at recall r: the least "
        "share of test rows sent to review (risk >= t, ties reviewed) so that >= r of the violations are, with "
        "t set on the test split itself (no slack). model = the bundle's calibrated risk, baseline = its "
        "logistic regression, reference = scikit-learn HistGradientBoosting + TF-IDF logistic regression "
        "fitted on the same training part (bench/quality_reference.py); built-in only: limit = `limit_risk` "
        "(reachable limit), oracle = `true_risk` (physical limit).",
        "",
    ]
    for result in results:
        lines += section(result)
    RESULTS_MD.write_text("\n".join(lines))
    return "\n".join(lines)
