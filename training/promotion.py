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
- the guarantee: the challenger's policy must be certified (`Policy.guarantee_state == "certified"`), and
  these rows must not show a certified target of it failing (the re-test below).

Refusal margins (a challenger may lose a little to noise, never more):
  auto-decided share lower than the champion's by more than `AUTO_SHARE_MARGIN` (1 point),
  AUC lower by more than `AUC_MARGIN` (0.005), recall at the policy lower by more than `RECALL_MARGIN`
  (1 point), or a guarantee that is not certified or is shown failing on these rows. With no champion, a
  certified challenger none of whose targets these rows show failing passes.

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

A champion's certificate ages. It was proven on the data it was trained and certified on; the traffic
moves on. So the gate re-tests each bundle's certified targets on the gate's rows (`recheck_targets`),
on the policy's own decisions, with the certificate's kind of test (the exact binomial test on fully
labelled rows, `decision.guarantees`; the test by betting on audit-weighted ones, `decision.weighted`),
at the level each statement was certified at (as the policy recorded it), both ways: whether the target
still certifies ("holds"), and whether the rows show it failing ("fails": the same test of the
complementary null, "the share is at least the target", rejected); neither is "not shown". The
champion's workload counts against the challenger while its policy is certified and no certified target
is shown to fail on these rows (`BundleReport.workload_counts`). Ranking and recall at the policy are
always compared.

Why "shown to fail" and not "shown again". A certificate holds for the traffic it was proven on;
the re-test looks for evidence that the traffic moved away from it. Thresholds are certified at the edge
of what their rows could show, so on gate rows of similar or smaller size a champion whose targets do
hold usually cannot show them again: requiring that (the gate's earlier rule) dropped the champion's claim
in 58 of 60 retrains of the 100k loop benchmark and promoted certified challengers whose certificates on
logged verdicts leave more room under the target, at 0.78x the workload of a fully labelled loop; kept
instead (a run that never dropped the claim), those champions held their targets by the generator's
expectation in all 80 seed-cycles (`bench/RESULTS_LOOP_DENSE_AUDIT.md`). What this rule guarantees:

* A champion whose targets hold in truth (share >= target) loses its claim with probability at most the
  sum of its targets' alphas: each "fails" verdict is a level-alpha test of "share >= target" on rows
  neither bundle trained on (the held-out newest verdicts, each labelled with a known pi fixed before its
  label was known), by the exact binomial test (Clopper-Pearson's upper bound on the kept share at most
  the target) or the betting test of `decision.weighted` with kept and lost swapped (its null "lost
  share <= 1 - target" is "share >= target"; the proof there is symmetric in the two kinds).
* A champion whose target fails in truth by a margin the gate's rows can resolve loses its claim; one
  that fails by less than that margin keeps it. That residual risk is what the drift alarms watch
  between retrains (`serving.monitor.drift_checks`: the production recall estimate against its target).
* A challenger is promoted only on its own certificate, and only while these rows do not show one of its
  targets failing. Its certificate rests on the newest rows it could be proven on: the newest verdicts,
  or, where those are audit-sampled too thinly to certify at all, the newest fully labelled history
  (`training.pipeline.split_for_certification`); the re-test on the newest verdicts is the check that the
  traffic has not moved away from them.

tests/training/test_promotion.py simulates both verdicts' error rates on both kinds of rows.
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
from decision.alpha_split import AlphaSplit
from decision.guarantees import miss_rate_upper
from decision.policy import CODE_BLOCK, CODE_PASS, CODE_REVIEW, Policy
from decision.simulate import policy_tier_targets
from decision.tiers import tier_labels
from decision.weighted import Strata, share_certified
from features.config import INCLUSION_PROB, DataConfig
from features.validate import validate_history
from training.offline import decide

log = logging.getLogger(__name__)

AUTO_SHARE_MARGIN = 0.01  # the challenger may auto-decide at most 1 point less than the champion
AUC_MARGIN = 0.005  # ... rank at most 0.005 ROC-AUC worse
RECALL_MARGIN = 0.01  # ... and catch at most 1 point fewer violations at its policy

# a certified target re-tested on the gate's rows (`recheck_targets`)
RETEST_HOLDS = "holds"  # certified again
RETEST_FAILS = "fails"  # shown to fail: "share >= target" rejected
RETEST_UNSHOWN = "not shown"  # neither


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
    # each certified target re-tested on these rows (`recheck_targets`): target name -> RETEST_* verdict
    recheck: dict[str, str] = field(default_factory=dict)

    @property
    def certified(self) -> bool:
        return self.guarantee_state == "certified"

    @property
    def auto_decided(self) -> float:
        return self.auto_pass + self.auto_block

    @property
    def lapsed(self) -> list[str]:
        """The certified targets that these rows do not certify again (failing, or not shown either way)."""
        return [name for name, verdict in self.recheck.items() if verdict != RETEST_HOLDS]

    @property
    def failing(self) -> list[str]:
        """The certified targets these rows show failing."""
        return [name for name, verdict in self.recheck.items() if verdict == RETEST_FAILS]

    @property
    def workload_counts(self) -> bool:
        """Whether this bundle's workload counts against a challenger: certified, with targets re-tested on
        these rows, none shown to fail (module docstring)."""
        return self.certified and bool(self.recheck) and not self.failing


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
            return {
                **asdict(report),
                "certified": report.certified,
                "auto_decided": report.auto_decided,
                "lapsed": report.lapsed,
                "failing": report.failing,
                "workload_counts": report.workload_counts,
            }

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
                out.append(f"{name:11} (none: the challenger needs only a certified guarantee not shown failing)")
                continue
            out.append(
                f"{name:11} {report.version:28} {report.auto_pass:10.1%} {report.human_review:10.1%} "
                f"{report.auto_block:10.1%} {report.roc_auc:10.4f} {report.recall:10.1%}  {report.guarantee_state}"
                + _recheck_text(report)
            )
        out += [f"note: {note}" for note in self.notes]
        if self.passed:
            out.append("PASSED: the challenger is no worse than the champion")
        else:
            out += ["REFUSED:"] + [f"  - {reason}" for reason in self.refusals]
        return out


def _recheck_text(report: BundleReport) -> str:
    if not report.recheck:
        return ""
    if not report.lapsed:
        return ", re-tested here: holds"
    if report.failing:
        return f", re-tested here: fails ({', '.join(report.failing)})"
    return f", re-tested here: not shown again ({', '.join(report.lapsed)}), not shown to fail"


def _certified_above(kept: np.ndarray, lost: np.ndarray, strata: Strata, alpha: float, target: float) -> bool:
    """Whether the share kept / (kept + lost) is certified above `target` at level alpha from (H,) labelled
    counts per stratum (n > 0, 0 < target < 1). With every row labelled (one stratum, pi = 1) the exact
    binomial test the unweighted certificate uses (`decision.guarantees`: lost ~ Binomial(n, 1 - share)
    given n; Clopper-Pearson's upper bound on the lost share is that test inverted); else the weighted test
    by betting (`decision.weighted.share_certified`)."""
    if not strata.weighted:
        return miss_rate_upper(int(lost.sum()), int(kept.sum() + lost.sum()), alpha) <= 1.0 - target
    return bool(share_certified(kept, lost, strata.pi, alpha, target)[0])


def _retest(kept: np.ndarray, lost: np.ndarray, strata: Strata, alpha: float, target: float) -> str:
    """The RETEST_* verdict on "the share kept / (kept + lost) is at least `target`", at level alpha, from
    (H,) labelled counts per stratum: certified again (the share is certified above `target`), shown to fail
    (certified below it: the lost share certified above 1 - target, the same test with the two kinds
    swapped), or neither (`_certified_above`, both ways)."""
    if int(kept.sum() + lost.sum()) == 0:
        return RETEST_UNSHOWN
    if target <= 0.0:  # every share reaches it
        return RETEST_HOLDS
    if target >= 1.0:  # no sample certifies it; one lost row disproves it
        return RETEST_FAILS if lost.sum() > 0 else RETEST_UNSHOWN
    if _certified_above(kept, lost, strata, alpha, target):
        return RETEST_HOLDS
    return RETEST_FAILS if _certified_above(lost, kept, strata, alpha, 1.0 - target) else RETEST_UNSHOWN


def _recorded_alphas(policy: Policy, names: list[str]) -> tuple[list[float], float | None]:
    """The level of each recall statement (by target name) and of the block statement (None: none made), as
    the policy's certificate recorded them: each tier's `confidence`, else `recall_confidence`, else the
    split of 1 - confidence (`AlphaSplit`) for policies that recorded neither."""
    guarantee = policy.guarantee
    delta = 1.0 - float(policy.targets.get("confidence", 0.95))
    split = AlphaSplit.from_dict(policy.targets.get("alpha_split"), len(names)) or AlphaSplit.default(len(names))
    split_tiers, split_block = split.alphas(delta)
    tier_confidence = {t.get("name"): t.get("confidence") for t in guarantee.get("tiers") or [] if isinstance(t, dict)}
    alphas = []
    for name, fallback in zip(names, split_tiers.tolist() if names else [], strict=True):
        confidence = tier_confidence.get(name, guarantee.get("recall_confidence") if len(names) == 1 else None)
        alphas.append(1.0 - float(confidence) if confidence is not None else fallback)
    if "block_confidence" in guarantee:
        block = guarantee["block_confidence"]
        return alphas, None if block is None else 1.0 - float(block)
    return alphas, split_block if split_block > 0 else None


def recheck_targets(
    policy: Policy, config: DataConfig, codes: np.ndarray, risk: np.ndarray, table: pd.DataFrame, weight: np.ndarray
) -> dict[str, str]:
    """What these labelled rows (weighted by `weight` = 1 / inclusion_prob) show of each of the policy's
    certified targets: name -> RETEST_HOLDS, RETEST_FAILS or RETEST_UNSHOWN (`_retest`); empty when the
    policy certified no target.

    Each recall target ("all", or each tier's on a tiered policy) is re-tested on its violations, kept when
    the policy did not auto-pass them; block precision on the rows the thresholds block (risk >= t_block,
    per segment; a rule's blocks have their own gate), kept when a violation, and only when the policy
    certified one and its thresholds blocked some of these rows. Each at the level the policy's certificate
    recorded (`_recorded_alphas`), by `_retest`. A target with no labelled violation here shows nothing
    either way, and neither do a tiered policy's recall targets on rows without the violation reason
    column (`config.violation_reason`): such targets are "not shown"."""
    if policy.guarantee_state != "certified":
        return {}
    label = table[config.label].to_numpy().astype(bool)
    strata = Strata.of(1.0 / weight)
    tier_targets = policy_tier_targets(policy)
    if tier_targets:
        reasons = table[config.violation_reason].to_numpy(dtype=object) if config.violation_reason in table else None
        tiers = tier_labels(label, reasons, config)
        untestable = reasons is None  # every violation would fall in the fallback tier
        groups = [(name, float(target), tiers == name) for name, target in tier_targets.items()]
    elif isinstance(policy.targets.get("recall"), (int, float)):
        untestable = False
        groups = [("all", float(policy.targets["recall"]), label)]
    else:
        untestable, groups = False, []
    alphas, block_alpha = _recorded_alphas(policy, [name for name, _, _ in groups])
    passed = codes == CODE_PASS
    out = {}
    for (name, target, violating), alpha in zip(groups, alphas, strict=True):
        kept, lost = strata.counts(violating & ~passed), strata.counts(violating & passed)
        out[name] = RETEST_UNSHOWN if untestable else _retest(kept, lost, strata, alpha, target)
    if policy.segment_by and policy.segment_by in table:
        _, t_block = policy.thresholds_for(table[policy.segment_by].astype(str).to_numpy())
    else:
        t_block = np.full(len(table), policy.t_block)
    blocked = (codes == CODE_BLOCK) & (np.asarray(risk) >= t_block)
    certified_block = policy.guarantee.get("block_precision_lower") is not None and block_alpha is not None
    if certified_block and "block_precision" in policy.targets and blocked.any():
        kept, lost = strata.counts(blocked & label), strata.counts(blocked & ~label)
        target = float(policy.targets["block_precision"])
        out["block_precision"] = _retest(kept, lost, strata, block_alpha, target)  # type: ignore[arg-type]
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
    recheck: dict[str, str] | None = None,
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
        recheck=dict(recheck or {}),
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
    recheck = recheck_targets(policy, config, codes, risk, table, weight)
    return weighted_report(bundle.version, policy.version, policy.guarantee_state, codes, risk, label, weight, recheck)


def compare(challenger: BundleReport, champion: BundleReport | None) -> list[str]:
    """The reasons to refuse the challenger (none: it passes). The champion's workload counts only while
    its policy is certified and no target is shown to fail on these rows (module docstring)."""
    refusals = []
    if not challenger.certified:
        refusals.append(f"guarantee: the challenger's policy is {challenger.guarantee_state}; certified is required")
    if challenger.failing:
        refusals.append(
            f"guarantee: these rows show the challenger's certified targets failing ({', '.join(challenger.failing)})"
        )
    if champion is None:
        return refusals
    if champion.workload_counts and challenger.auto_decided < champion.auto_decided - AUTO_SHARE_MARGIN:
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
    config = challenger_bundle.config
    if config.tiered and (config.violation_reason is None or config.violation_reason not in labels):
        notes.append(
            f"the labels carry no {config.violation_reason!r} column: the tiers' recall targets cannot be "
            "re-tested on them (they show nothing either way)"
        )
    if champion_report is not None and champion_report.version == challenger_report.version:
        notes.append("challenger and champion carry the same bundle version")
    if champion_report is not None and not champion_report.workload_counts:
        if champion_report.failing:
            why = f"these rows show its targets failing ({', '.join(champion_report.failing)})"
        elif champion_report.certified:
            why = "its policy certified no recall or block-precision target to re-test"
        else:
            why = f"its policy is {champion_report.guarantee_state}"
        notes.append(f"the champion's workload does not count against the challenger: {why}")
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
