"""The promotion gate: a challenger bundle against the champion on the same recent labelled data.

Both bundles score the same rows (an `export-labels` frame) through `training.offline` (features,
calibrated risk, every tier's risk and the bundle's own certified policy routed by `decision.policy.route`),
and the gate compares what production would see. Merchant-history features count, as the service's do,
every outcome reviewed before a listing: pass the outcomes known before the labelled rows (`history`, the
training rows) or they count only the labelled rows' own, and the risks are not the service's.

The figures:

- workload: the share each bundle's own policy auto-decides (auto-pass + auto-block; the rest is review),
- ranking: ROC-AUC of the calibrated risk,
- recall at the policy: violations not auto-passed / violations,
- the guarantee: the challenger's policy must be certified (`Policy.guarantee_state == "certified"`).

Refusal margins (a challenger may lose a little to noise, never more):
  auto-decided share lower than the champion's by more than `AUTO_SHARE_MARGIN` (1 point),
  AUC lower by more than `AUC_MARGIN` (0.005), recall at the policy lower by more than `RECALL_MARGIN`
  (1 point), or a guarantee that is not certified. With no champion, a certified challenger passes.

Unbiased under audit sampling. Labels exist only where a person looked: every human-review decision
(inclusion probability 1) and a Poisson sample of automated ones with known probability pi > 0. A row
of the frame with an `inclusion_prob` column is weighted by w = 1/pi, and every figure is a ratio of
weighted sums (Hajek 1971; Horvitz & Thompson 1952). Sketch: for any per-listing quantity y, the
indicator I of "labelled" has E[I] = pi, so E[sum_labelled y/pi] = sum_population y: the weighted sum
is unbiased for the population total, and a ratio of two such totals (a share, a recall) is consistent
(bias O(1/n), delta method). The weighted AUC is the ratio of weighted concordant pairs to weighted
(positive, negative) pairs: each pair's weight 1/(pi_i pi_j) is the inverse of its inclusion probability
under independent (Poisson) sampling, so numerator and denominator are unbiased pair totals and the ratio
is consistent. Unweighted, the automated decisions (most of them passes) are under-represented: the
auto-decided share and the recall come out too low and too high respectively (tests/training/
test_promotion.py shows both on a simulated log).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from bundle.load import Bundle
from decision.policy import CODE_BLOCK, CODE_PASS, CODE_REVIEW
from features.config import INCLUSION_PROB
from features.validate import validate_history
from training.offline import decide

log = logging.getLogger(__name__)

AUTO_SHARE_MARGIN = 0.01  # the challenger may auto-decide at most 1 point less than the champion
AUC_MARGIN = 0.005  # ... rank at most 0.005 ROC-AUC worse
RECALL_MARGIN = 0.01  # ... and catch at most 1 point fewer violations at its policy


@dataclass(frozen=True)
class BundleReport:
    """What one bundle's policy does on the labelled rows (weighted by 1/inclusion_prob)."""

    version: str
    policy_version: str
    guarantee_state: str
    auto_pass: float
    auto_block: float
    human_review: float
    roc_auc: float
    recall: float
    rows: int

    @property
    def certified(self) -> bool:
        return self.guarantee_state == "certified"

    @property
    def auto_decided(self) -> float:
        return self.auto_pass + self.auto_block


@dataclass(frozen=True)
class GateReport:
    """The gate's verdict: `passed`, and the reasons a challenger was refused (empty when it passed)."""

    challenger: BundleReport
    champion: BundleReport | None
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.refusals

    def to_dict(self) -> dict[str, Any]:
        def side(report: BundleReport | None) -> dict[str, Any] | None:
            if report is None:
                return None
            return {**asdict(report), "certified": report.certified, "auto_decided": report.auto_decided}

        return {
            "passed": self.passed,
            "refusals": self.refusals,
            "notes": self.notes,
            "margins": {"auto_decided": AUTO_SHARE_MARGIN, "roc_auc": AUC_MARGIN, "recall": RECALL_MARGIN},
            "challenger": side(self.challenger),
            "champion": side(self.champion),
        }

    def lines(self) -> list[str]:
        """The report a person reads: one line per bundle, then the verdict and its reasons."""
        columns = ("auto-pass", "review", "auto-block", "AUC", "recall")
        out = [f"{'':11} {'version':28} " + " ".join(f"{c:>10}" for c in columns) + "  guarantee"]
        for name, report in (("champion", self.champion), ("challenger", self.challenger)):
            if report is None:
                out.append(f"{name:11} (none: the challenger needs only a certified guarantee)")
                continue
            out.append(
                f"{name:11} {report.version:28} {report.auto_pass:10.1%} {report.human_review:10.1%} "
                f"{report.auto_block:10.1%} {report.roc_auc:10.4f} {report.recall:10.1%}  {report.guarantee_state}"
            )
        out += [f"note: {note}" for note in self.notes]
        if self.passed:
            out.append("PASSED: the challenger is no worse than the champion")
        else:
            out += ["REFUSED:"] + [f"  - {reason}" for reason in self.refusals]
        return out


def inclusion_weights(labels: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """1/inclusion_prob per row (ones without the column), and notes about rows that had none.

    ValueError naming the column if a probability is outside (0, 1]: such a row cannot be weighted.
    """
    if INCLUSION_PROB not in labels:
        return np.ones(len(labels)), [f"no {INCLUSION_PROB} column: every row weighs the same"]
    pi = pd.to_numeric(labels[INCLUSION_PROB], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isfinite(pi) & ((pi <= 0) | (pi > 1)))
    if bad.size:
        raise ValueError(f"{INCLUSION_PROB}: must lie in (0, 1]; rows {bad[:5].tolist()} hold {pi[bad[:5]].tolist()}")
    missing = ~np.isfinite(pi)
    notes = []
    if missing.any():
        notes.append(f"{int(missing.sum())} rows without {INCLUSION_PROB} (logged before it existed) weigh 1")
    return 1.0 / np.where(missing, 1.0, pi), notes


def weighted_report(
    version: str,
    policy_version: str,
    guarantee_state: str,
    codes: np.ndarray,
    risk: np.ndarray,
    label: np.ndarray,
    weight: np.ndarray,
) -> BundleReport:
    """Routing shares, ROC-AUC and recall of one bundle's decisions, each row weighted by `weight`."""
    total = float(weight.sum())
    violation = label == 1
    caught = float(weight[violation & (codes != CODE_PASS)].sum())
    violations = float(weight[violation].sum())
    both_classes = 0 < violation.sum() < len(label)
    return BundleReport(
        version=version,
        policy_version=policy_version,
        guarantee_state=guarantee_state,
        auto_pass=float(weight[codes == CODE_PASS].sum()) / total,
        auto_block=float(weight[codes == CODE_BLOCK].sum()) / total,
        human_review=float(weight[codes == CODE_REVIEW].sum()) / total,
        roc_auc=float(roc_auc_score(label, risk, sample_weight=weight)) if both_classes else float("nan"),
        recall=caught / violations if violations else float("nan"),
        rows=len(label),
    )


def bundle_report(
    bundle: Bundle, labels: pd.DataFrame, weight_by_id: pd.Series, history: pd.DataFrame | None = None
) -> BundleReport:
    """Score the labelled rows with the bundle (its features, calibration, tiers and policy, as
    `triage evaluate` and the service do) and summarise, weighted by `weight_by_id` (by listing id).
    Merchant history point in time from `history` and the labelled rows (a listing in both: the label)."""
    config = bundle.config
    table = validate_history(labels, config)
    known = labels if history is None else pd.concat([history, labels], ignore_index=True, sort=False)
    known = validate_history(known.drop_duplicates(config.id, keep="last"), config)
    risk, tier_risk = bundle.scores(table, history=known)
    codes = decide(bundle, table, risk, tier_risk)
    weight = table[config.id].astype(str).map(weight_by_id).to_numpy(dtype=np.float64)
    policy = bundle.policy
    label = table[config.label].to_numpy()
    return weighted_report(bundle.version, policy.version, policy.guarantee_state, codes, risk, label, weight)


def compare(challenger: BundleReport, champion: BundleReport | None) -> list[str]:
    """The reasons to refuse the challenger (none: it passes)."""
    refusals = []
    if not challenger.certified:
        refusals.append(f"guarantee: the challenger's policy is {challenger.guarantee_state}; certified is required")
    if champion is None:
        return refusals
    if challenger.auto_decided < champion.auto_decided - AUTO_SHARE_MARGIN:
        refusals.append(
            f"workload: the challenger auto-decides {challenger.auto_decided:.1%}, the champion "
            f"{champion.auto_decided:.1%} (at most {AUTO_SHARE_MARGIN * 100:.0f} point less allowed)"
        )
    if not challenger.roc_auc >= champion.roc_auc - AUC_MARGIN:  # NaN (one class only) refuses too
        refusals.append(
            f"roc_auc: the challenger's {challenger.roc_auc:.4f} is below the champion's "
            f"{champion.roc_auc:.4f} by more than {AUC_MARGIN}"
        )
    if not challenger.recall >= champion.recall - RECALL_MARGIN:
        refusals.append(
            f"recall: the challenger's policy catches {challenger.recall:.1%} of violations, the champion's "
            f"{champion.recall:.1%} (at most {RECALL_MARGIN * 100:.0f} point less allowed)"
        )
    return refusals


def run_gate(
    challenger: Path, champion: Path | None, labels: pd.DataFrame, history: pd.DataFrame | None = None
) -> GateReport:
    """Compare the challenger bundle with the champion (None: there is none yet) on `labels`; `history`:
    the outcomes known before them (the training rows), for the merchant-history features."""
    if labels.empty:
        raise ValueError("labels: no labelled rows to compare the models on (export-labels wrote none)")
    weight, notes = inclusion_weights(labels)
    challenger_bundle = Bundle.load(challenger, threads=0)
    id_column = challenger_bundle.config.id
    if id_column not in labels:
        raise ValueError(f"labels: no column {id_column!r} (the listing id)")
    weight_by_id = pd.Series(weight, index=labels[id_column].astype(str).to_numpy())
    challenger_report = bundle_report(challenger_bundle, labels, weight_by_id, history)
    champion_report = (
        bundle_report(Bundle.load(champion, threads=0), labels, weight_by_id, history) if champion else None
    )
    if champion_report is not None and champion_report.version == challenger_report.version:
        notes.append("challenger and champion carry the same bundle version")
    return GateReport(challenger_report, champion_report, compare(challenger_report, champion_report), notes)


def champion_bundle(models_dir: Path, scratch: Path) -> Path | None:
    """The registry's champion as a bundle directory: `models_dir/<its bundle version>` when present,
    else downloaded into `scratch`; None when no version is aliased `champion`."""
    from training.registry import CHAMPION_ALIAS, REGISTERED_MODEL, alias_version, bundle_version_of, download_bundle

    version = alias_version(CHAMPION_ALIAS)
    if version is None:
        return None
    local = models_dir / bundle_version_of(version)
    if local.is_dir():
        return local
    return download_bundle(f"models:/{REGISTERED_MODEL}@{CHAMPION_ALIAS}", scratch)


def gate_and_register(report: GateReport) -> str | None:
    """Record the gate's verdict on the challenger's registered version (tags `gate` and `gate_report`)
    and, if it passed, point the registry's `candidate` alias at it: the version, or None when refused.
    LookupError if the challenger was never registered."""
    from training.registry import CANDIDATE_ALIAS, set_alias, set_version_tags, version_of_bundle

    version = version_of_bundle(report.challenger.version)
    if version is None:
        raise LookupError(
            f"bundle {report.challenger.version} is not in the MLflow registry (trained with --no-mlflow?): "
            "train it with MLflow logging to register it"
        )
    verdict = json.dumps(report.to_dict(), allow_nan=True)[:5000]
    set_version_tags(version, {"gate": "passed" if report.passed else "refused", "gate_report": verdict})
    if not report.passed:
        return None
    set_alias(version, CANDIDATE_ALIAS)
    return version
