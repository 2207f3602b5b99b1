"""The promotion gate: unbiased under audit sampling, refuses a worse challenger, passes an equal one."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from decision.policy import CODE_BLOCK, CODE_PASS, CODE_REVIEW, Policy
from decision.weighted import Strata
from features.config import DataConfig
from training.promotion import (
    AUC_MARGIN,
    RETEST_FAILS,
    RETEST_HOLDS,
    RETEST_UNSHOWN,
    BundleReport,
    compare,
    inclusion_weights,
    recheck_targets,
    run_gate,
    weighted_report,
)


def _population(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    risk = rng.beta(0.6, 6.0, n)
    label = (rng.random(n) < risk).astype(int)
    codes = np.where(risk < 0.05, CODE_PASS, np.where(risk >= 0.6, CODE_BLOCK, CODE_REVIEW))
    return risk, label, codes


def test_weighted_figures_are_unbiased_under_audit_sampling_and_unweighted_ones_are_not() -> None:
    """Labels only for reviewed rows (pi = 1) and a Poisson audit of automated ones (pi = 3% of passes,
    20% of blocks): over 200 logs, the 1/pi-weighted auto-decided share, recall and AUC centre on the
    population's (within 4 Monte Carlo standard errors); the unweighted ones miss by far more."""
    rng = np.random.default_rng(0)
    risk, label, codes = _population(rng, 60_000)
    truth = weighted_report("p", "p", "certified", codes, risk, label, np.ones(len(risk)))
    pi = np.select([codes == CODE_REVIEW, codes == CODE_PASS], [1.0, 0.03], 0.2)
    weighted, unweighted = [], []
    for _ in range(200):
        kept = rng.random(len(pi)) < pi
        args = (codes[kept], risk[kept], label[kept])
        w = weighted_report("s", "s", "certified", *args, 1.0 / pi[kept])
        u = weighted_report("s", "s", "certified", *args, np.ones(int(kept.sum())))
        weighted.append((w.auto_decided, w.recall, w.roc_auc))
        unweighted.append((u.auto_decided, u.recall, u.roc_auc))
    w_mean, w_se = np.mean(weighted, axis=0), np.std(weighted, axis=0) / np.sqrt(len(weighted))
    u_mean = np.mean(unweighted, axis=0)
    true = np.array([truth.auto_decided, truth.recall, truth.roc_auc])
    assert np.all(np.abs(w_mean - true) < 4 * w_se + 1e-3), (w_mean, true)
    assert abs(u_mean[0] - true[0]) > 0.3  # the unweighted log hides most automated decisions
    assert abs(u_mean[1] - true[1]) > 0.02  # ... and overstates recall
    assert truth.roc_auc == pytest.approx(roc_auc_score(label, risk))


def test_inclusion_weights_refuse_impossible_probabilities_naming_the_column() -> None:
    weights, notes = inclusion_weights(pd.DataFrame({"inclusion_prob": [1.0, 0.25, np.nan]}))
    assert weights.tolist() == [1.0, 4.0, 1.0] and "1 rows without inclusion_prob" in notes[0]
    with pytest.raises(ValueError, match="inclusion_prob: must lie in"):
        inclusion_weights(pd.DataFrame({"inclusion_prob": [0.5, 0.0]}))


def _report(**changes: object) -> BundleReport:
    values: dict[str, object] = {
        "version": "v",
        "policy_version": "p",
        "guarantee_state": "certified",
        "auto_pass": 0.6,
        "auto_block": 0.05,
        "human_review": 0.35,
        "roc_auc": 0.9,
        "recall": 0.96,
        "rows": 1000,
        "recheck": {"all": RETEST_HOLDS},
    }
    values.update(changes)
    return BundleReport(**values)  # type: ignore[arg-type]


def test_margins_refuse_what_is_worse_by_more_than_the_margin_and_no_more() -> None:
    champion = _report()
    assert compare(_report(auto_pass=0.595, roc_auc=0.9 - AUC_MARGIN / 2, recall=0.955), champion) == []
    refusals = compare(_report(auto_pass=0.55, roc_auc=0.88, recall=0.9), champion)
    assert [r.split(":")[0] for r in refusals] == ["workload", "roc_auc", "recall"]
    assert compare(_report(guarantee_state="provisional, not certified"), None)[0].startswith("guarantee")
    assert compare(_report(), None) == []  # no champion yet: certified (and not shown failing) is enough


def test_a_champion_keeps_its_workload_claim_until_its_targets_are_shown_to_fail() -> None:
    """Workload counts for a certified champion none of whose targets the gate's rows show failing, whether
    they certify again or show nothing either way; not for one shown failing, one not certified, or one with
    no target to re-test. Ranking and recall are compared whatever the champion's guarantee."""
    fewer = _report(auto_pass=0.5, roc_auc=0.88, recall=0.9)
    holding = _report(recheck={"all": RETEST_HOLDS, "block_precision": RETEST_HOLDS})
    unshown = _report(recheck={"all": RETEST_UNSHOWN, "block_precision": RETEST_HOLDS})
    failing = _report(recheck={"all": RETEST_HOLDS, "block_precision": RETEST_FAILS})
    hand_set = _report(guarantee_state="hand_set, not certified", recheck={})
    nothing_to_retest = _report(recheck={})  # e.g. a cost-mode policy: certified, but no target

    for champion in (holding, unshown):
        assert champion.workload_counts
        assert [r.split(":")[0] for r in compare(fewer, champion)] == ["workload", "roc_auc", "recall"]
    assert unshown.lapsed == ["all"] and unshown.failing == []
    assert failing.lapsed == failing.failing == ["block_precision"]
    for champion in (failing, hand_set, nothing_to_retest):
        assert not champion.workload_counts
        assert [r.split(":")[0] for r in compare(fewer, champion)] == ["roc_auc", "recall"]
        assert compare(_report(auto_pass=0.5), champion) == []


_TARGETS = {"recall": 0.95, "block_precision": 0.9, "confidence": 0.95}  # recall at alpha 0.025 (default split)
_CERTIFIED = {"mode": "guarantee", "feasible": True, "block_precision_lower": 0.92}


def test_a_challenger_whose_targets_the_recent_verdicts_show_failing_is_refused() -> None:
    """A challenger's certificate may rest on older rows than the gate's (the newest fully labelled history,
    `training.pipeline.split_for_certification`): the gate's rows showing one of its targets failing refuse
    it, with or without a champion; targets they only fail to show again do not."""
    failing = _report(recheck={"all": RETEST_FAILS, "block_precision": RETEST_HOLDS})
    for champion in (None, _report(auto_pass=0.4)):
        refusals = compare(failing, champion)
        assert len(refusals) == 1 and refusals[0].startswith("guarantee") and "(all)" in refusals[0]
        assert compare(_report(recheck={"all": RETEST_UNSHOWN}), champion) == []


def _policy(t_pass: float, t_block: float = 1.0, **targets: object) -> Policy:
    return Policy("p", t_pass, t_block, targets={**_TARGETS, **targets}, guarantee=dict(_CERTIFIED))


def _audit_log(
    rng: np.random.Generator, n: int, policy: Policy, pass_rate: float
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """n listings of traffic (risk ~ Beta(0.6, 6), violation ~ Bernoulli(risk)) decided by the policy, then
    labelled as the service logs them: reviews always (pi = 1), auto-decisions in a Poisson audit."""
    risk = rng.beta(0.6, 6.0, n)
    label = (rng.random(n) < risk).astype(int)
    codes = np.where(risk < policy.t_pass, CODE_PASS, np.where(risk >= policy.t_block, CODE_BLOCK, CODE_REVIEW))
    pi = np.where(codes == CODE_REVIEW, 1.0, pass_rate)
    kept = rng.random(n) < pi
    table = pd.DataFrame({"label": label[kept], "risk": risk[kept]})
    return table, codes[kept], 1.0 / pi[kept]


def _t_pass_at_recall(recall: float) -> float:
    """The t_pass whose recall in the traffic of `_audit_log` is `recall` (from 4M draws)."""
    rng = np.random.default_rng(7)
    risk = rng.beta(0.6, 6.0, 4_000_000)
    violating = risk[rng.random(len(risk)) < risk]
    return float(np.quantile(violating, 1.0 - recall))


def _recheck(policy: Policy, config: DataConfig, table: pd.DataFrame, codes: np.ndarray, weight: np.ndarray):
    return recheck_targets(policy, config, codes, table["risk"].to_numpy(), table, weight)


@pytest.mark.parametrize("pass_rate", [0.25, 1.0], ids=["audit-weighted", "fully-labelled"])
def test_each_verdict_of_the_recheck_errs_at_most_alpha_of_the_time(pass_rate: float) -> None:
    """Coverage simulation of `recheck_targets`, on 300 logs of 20,000 listings whose auto-passes were
    audited at 25% (the test by betting) or all labelled (the exact binomial tests). A policy whose recall
    in truth is exactly its target (0.95) lies on the boundary of both nulls, where each test is least
    conservative: it is certified again on at most alpha (0.025) of the logs, and shown failing on at most
    alpha of them (Monte Carlo slack of 3 standard errors). Neither test is vacuous: true recall 0.99
    certifies again, and 0.88 is shown failing, on nearly every log. (The betting test is conservative:
    its errors here are far below alpha, so `test_the_exact_recheck_errs_at_most_alpha_at_every_count`
    checks the exact tests' level without Monte Carlo slack.)"""
    rng = np.random.default_rng(11)
    config = DataConfig(tiers=())
    reps = 300
    policies = {recall: _policy(_t_pass_at_recall(recall)) for recall in (0.88, 0.95, 0.99)}
    verdicts: dict[float, list[str]] = {recall: [] for recall in policies}
    for _ in range(reps):
        for recall, policy in policies.items():
            verdicts[recall].append(_recheck(policy, config, *_audit_log(rng, 20_000, policy, pass_rate))["all"])
    alpha = 0.025
    slack = alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps)
    assert verdicts[0.95].count(RETEST_HOLDS) / reps <= slack, verdicts[0.95].count(RETEST_HOLDS)
    assert verdicts[0.95].count(RETEST_FAILS) / reps <= slack, verdicts[0.95].count(RETEST_FAILS)
    assert verdicts[0.99].count(RETEST_HOLDS) / reps > 0.9, verdicts[0.99].count(RETEST_HOLDS)
    assert verdicts[0.88].count(RETEST_FAILS) / reps > 0.9, verdicts[0.88].count(RETEST_FAILS)


@pytest.mark.parametrize("n", [40, 200, 1000])
@pytest.mark.parametrize("alpha", [0.025, 0.05])
def test_the_exact_recheck_errs_at_most_alpha_at_every_count(n: int, alpha: float) -> None:
    """The fully labelled re-test's two verdicts, summed exactly over Binomial(n, 1 - target) misses at a
    true share exactly the target (0.95, both nulls' boundary): "holds" and "fails" each have probability
    at most alpha, and not far below it (the tests are exact up to the binomial's discreteness), so a test
    run at the wrong level or in the wrong direction fails here. Away from the boundary each verdict comes
    when it should: a share far below the target almost always fails, far above almost always holds."""
    from scipy import stats

    from training.promotion import _retest

    strata = Strata.of(np.ones(1))
    target = 0.95

    def probability(verdict: str, share: float) -> float:
        misses = np.arange(n + 1)
        hits = [_retest(np.array([n - k]), np.array([k]), strata, alpha, target) == verdict for k in misses]
        return float(stats.binom.pmf(misses, n, 1.0 - share)[hits].sum())

    for verdict in (RETEST_HOLDS, RETEST_FAILS):
        assert probability(verdict, target) <= alpha + 1e-12, verdict
    if n >= 200:  # enough violations for the discreteness to leave most of the level in use
        assert probability(RETEST_HOLDS, target) > alpha / 3 and probability(RETEST_FAILS, target) > alpha / 3
        assert probability(RETEST_FAILS, 0.80) > 0.95 and probability(RETEST_HOLDS, 0.995) > 0.95
    assert _retest(np.array([n]), np.array([0]), strata, alpha, 1.0) == RETEST_UNSHOWN  # no miss: 1 not disproved
    assert _retest(np.array([n - 1]), np.array([1]), strata, alpha, 1.0) == RETEST_FAILS


def test_the_recheck_runs_at_the_level_the_certificate_recorded() -> None:
    """200 labelled violations, 4 of them auto-passed, target recall 0.95: P(at most 4 misses | recall 0.95)
    = 0.026, so the exact test certifies at alpha 0.05 and not at 0.025. The level is the one the policy's
    certificate recorded (its recall_confidence; a tier's own confidence), not a fixed one."""
    label = np.r_[np.ones(200, dtype=int), np.zeros(800, dtype=int)]
    codes = np.where(np.arange(1000) < 4, CODE_PASS, CODE_REVIEW)
    table = pd.DataFrame({"label": label, "risk": np.full(1000, 0.5)})
    config = DataConfig(tiers=())
    at = {confidence: replace(_policy(0.0), guarantee={**_CERTIFIED, "recall_confidence": confidence})
          for confidence in (0.95, 0.975)}  # fmt: skip
    assert recheck_targets(at[0.95], config, codes, table["risk"].to_numpy(), table, np.ones(1000)) == {
        "all": RETEST_HOLDS
    }
    assert recheck_targets(at[0.975], config, codes, table["risk"].to_numpy(), table, np.ones(1000)) == {
        "all": RETEST_UNSHOWN  # 4 misses in 200 do not show recall below 0.95 either
    }
    tiered = replace(
        _policy(0.0),
        targets={**_TARGETS, "recall": {"severe": 0.95}},
        guarantee={**_CERTIFIED, "tiers": [{"name": "severe", "confidence": 0.95}]},
    )
    severe = table.assign(violation_reason=np.where(label == 1, "counterfeit", ""))
    assert recheck_targets(tiered, DataConfig(), codes, severe["risk"].to_numpy(), severe, np.ones(1000)) == {
        "severe": RETEST_HOLDS
    }


def test_the_recheck_tests_every_certified_target_and_nothing_else() -> None:
    rng = np.random.default_rng(3)
    config = DataConfig(tiers=())
    blocking = _policy(_t_pass_at_recall(0.99), t_block=0.4, block_precision=0.3)  # blocked: precision ~0.48
    table, codes, weight = _audit_log(rng, 40_000, blocking, pass_rate=0.2)
    assert _recheck(blocking, config, table, codes, weight) == {"all": RETEST_HOLDS, "block_precision": RETEST_HOLDS}
    # a block precision target far above what the blocked rows show is shown failing; recall still holds
    strict_block = _policy(_t_pass_at_recall(0.99), t_block=0.4, block_precision=0.6)
    assert _recheck(strict_block, config, table, codes, weight) == {
        "all": RETEST_HOLDS,
        "block_precision": RETEST_FAILS,
    }
    # a rule's blocks (below t_block) are the rule gate's business, not the thresholds' certificate
    rule_blocks = np.where((codes == CODE_BLOCK) | (table["label"].to_numpy() == 0), CODE_BLOCK, codes)
    no_threshold_blocks = replace(strict_block, t_block=0.999)
    assert _recheck(no_threshold_blocks, config, table, rule_blocks, weight) == {"all": RETEST_HOLDS}
    # nothing blocked: the block statement is not re-tested; an uncertified policy has nothing to re-test
    table, codes, weight = _audit_log(rng, 40_000, _policy(_t_pass_at_recall(0.99)), pass_rate=0.2)
    assert _recheck(_policy(_t_pass_at_recall(0.99)), config, table, codes, weight) == {"all": RETEST_HOLDS}
    assert _recheck(replace(_policy(0.01), provisional=True), config, table, codes, weight) == {}
    # a cost-mode policy is certified but states no recall or block-precision target: nothing to re-test
    cost = replace(_policy(0.01), targets={"cost_review": 1.0, "cost_miss": 50.0, "cost_wrong_block": 20.0})
    assert _recheck(cost, config, table, codes, weight) == {}
    # a tiered policy: each tier's recall on its own violations; a tier with no labelled violation shows
    # nothing either way, and without the violation reason column no tier's target can be re-tested
    tiered = replace(_policy(0.0), targets={**_TARGETS, "recall": {"severe": 0.5, "minor": 0.5}})
    reasons = np.where(table["label"].to_numpy() == 1, "counterfeit", "")  # every violation a severe one
    assert _recheck(tiered, DataConfig(), table.assign(violation_reason=reasons), codes, weight) == {
        "severe": RETEST_HOLDS,
        "minor": RETEST_UNSHOWN,
    }
    assert _recheck(tiered, DataConfig(), table, codes, weight) == {"severe": RETEST_UNSHOWN, "minor": RETEST_UNSHOWN}


def _copy(bundle_dir: Path, root: Path, name: str) -> Path:
    return Path(shutil.copytree(bundle_dir, root / name))


def _reverse_calibrators(bundle: Path) -> None:
    """A deliberately weak model: every calibrator maps the model's score backwards (ranks inverted)."""
    from bundle.manifest import write_manifest

    for path in [bundle / "calibrator.json", *sorted((bundle / "tiers").glob("*.calibrator.json"))]:
        raw = json.loads(path.read_text())
        raw["y"] = raw["y"][::-1]
        path.write_text(json.dumps(raw))
    write_manifest(bundle)


def _retargeted(bundle_dir: Path, root: Path, name: str, recall: float) -> Path:
    """A copy of the bundle whose policy records another recall target for every tier (same thresholds)."""
    from bundle.policies import load_policy, save_policy

    out = _copy(bundle_dir, root, name)
    policy = load_policy(out)
    targets = dict(policy.targets)
    targets["recall"] = dict.fromkeys(targets["recall"], recall) if isinstance(targets["recall"], dict) else recall
    save_policy(out, replace(policy, targets=targets, version=f"{policy.version}-{name}"))
    return out


@pytest.fixture(scope="module")
def recent_labels(generated_dir: Path) -> pd.DataFrame:
    """The newest 4,000 listings, as export-labels would give them under audit sampling: reviewed rows
    with inclusion_prob 1, automated ones a 25% audit sample (weight 4)."""
    frame = pd.read_parquet(generated_dir / "reviews.parquet").sort_values("created_at").tail(4000)
    rng = np.random.default_rng(1)
    pi = np.where(rng.random(len(frame)) < 0.5, 1.0, 0.25)
    kept = rng.random(len(frame)) < pi
    return frame[kept].assign(inclusion_prob=pi[kept]).reset_index(drop=True)


def test_the_gate_passes_an_equal_challenger_and_refuses_a_weak_one(
    bundle_dir: Path, recent_labels: pd.DataFrame, tmp_path: Path
) -> None:
    from bundle.policies import load_policy, save_policy

    weak = _copy(bundle_dir, tmp_path, "weak")
    _reverse_calibrators(weak)
    # a policy that passes half the risk scale lets violations through: the same model, a worse recall
    lax = _copy(bundle_dir, tmp_path, "lax")
    policy = load_policy(lax)
    save_policy(lax, replace(policy, tier_pass=dict.fromkeys(policy.tier_pass, 0.5), version=f"{policy.version}-lax"))

    # a champion whose (modest) targets still certify on these 4,000 rows keeps its workload claim
    modest = _retargeted(bundle_dir, tmp_path, "modest", 0.3)
    equal = run_gate(bundle_dir, bundle_dir, recent_labels)
    refused = run_gate(weak, modest, recent_labels)
    lax_report = run_gate(lax, bundle_dir, recent_labels)
    first = run_gate(bundle_dir, None, recent_labels)

    assert equal.passed and equal.champion is not None and equal.refusals == []
    assert equal.challenger.auto_decided == pytest.approx(equal.champion.auto_decided)
    assert 0.5 < equal.challenger.roc_auc <= 1.0
    assert not refused.passed and refused.champion is not None and refused.champion.workload_counts
    # ranks inverted: AUC falls, and so does the recall or the auto-decided share, by where the
    # thresholds fall on the reversed calibrators
    reasons = {r.split(":")[0] for r in refused.refusals}
    assert "roc_auc" in reasons and reasons & {"recall", "workload"}
    assert not lax_report.passed and "recall" in {r.split(":")[0] for r in lax_report.refusals}
    assert lax_report.challenger.roc_auc == pytest.approx(equal.challenger.roc_auc)
    assert "REFUSED:" in refused.lines()
    assert first.passed and first.champion is None  # no champion yet: certified suffices
    assert json.loads(json.dumps(refused.to_dict()))["passed"] is False


def test_a_champion_whose_targets_fail_on_the_recent_verdicts_keeps_no_workload_claim(
    bundle_dir: Path, recent_labels: pd.DataFrame, tmp_path: Path
) -> None:
    """The same model and thresholds as champion, once with targets the recent rows still certify and once
    with targets they show failing (0.9999): a challenger that auto-decides less is refused on workload by
    the first, and passes against the second, with the failing targets named."""
    from bundle.policies import load_policy, save_policy

    cautious = _copy(bundle_dir, tmp_path, "cautious")
    policy = load_policy(cautious)
    lower = {name: value / 4 for name, value in policy.tier_pass.items()}
    save_policy(cautious, replace(policy, tier_pass=lower, t_pass=policy.t_pass / 4, version=f"{policy.version}-c"))
    modest = _retargeted(bundle_dir, tmp_path, "modest", 0.3)
    exacting = _retargeted(bundle_dir, tmp_path, "exacting", 0.9999)

    against_modest = run_gate(cautious, modest, recent_labels)
    against_exacting = run_gate(cautious, exacting, recent_labels)

    assert against_modest.champion is not None and against_modest.champion.workload_counts
    assert [r.split(":")[0] for r in against_modest.refusals] == ["workload"]
    champion = against_exacting.champion
    assert champion is not None and not champion.workload_counts and champion.failing
    assert champion.auto_decided == pytest.approx(against_modest.champion.auto_decided)  # same decisions
    assert against_exacting.passed, against_exacting.refusals
    text = "\n".join(against_exacting.lines())
    assert "certified, re-tested here: fails (" in text and "the champion's workload does not count" in text
    assert json.loads(json.dumps(against_exacting.to_dict()))["champion"]["workload_counts"] is False


def test_the_gate_counts_the_merchant_history_before_the_labels_as_the_service_does(
    bundle_dir: Path, generated_dir: Path, recent_labels: pd.DataFrame
) -> None:
    """Given the outcomes before the labelled rows, the gate scores them as the bundle does with the whole
    history (the service's merchant features), not from the merchants' few outcomes among the labels."""
    from bundle.load import Bundle
    from features.validate import validate_history
    from training.offline import decide

    whole = pd.read_parquet(generated_dir / "reviews.parquet")
    older = whole[~whole["listing_id"].isin(recent_labels["listing_id"])]
    bundle = Bundle.load(bundle_dir, threads=0)
    table = validate_history(recent_labels, bundle.config)
    risk, tier_risk = bundle.scores(table, history=validate_history(whole, bundle.config))
    codes = decide(bundle, table, risk, tier_risk)
    weight = 1.0 / table["inclusion_prob"].to_numpy()
    expected = weighted_report("v", "p", "certified", codes, risk, table["label"].to_numpy(), weight)

    report = run_gate(bundle_dir, bundle_dir, recent_labels, history=older)
    assert report.challenger.roc_auc == pytest.approx(expected.roc_auc, abs=1e-9)
    assert report.challenger.auto_pass == pytest.approx(expected.auto_pass, abs=1e-9)
    assert report.challenger.recall == pytest.approx(expected.recall, abs=1e-9)


def test_the_gate_refuses_an_uncertified_challenger(bundle_dir: Path, recent_labels: pd.DataFrame, tmp_path: Path):
    from bundle.policies import load_policy, save_policy

    uncertified = _copy(bundle_dir, tmp_path, "uncertified")
    policy = load_policy(uncertified)
    save_policy(uncertified, replace(policy, provisional=True, version=f"{policy.version}-provisional"))

    report = run_gate(uncertified, None, recent_labels)
    assert not report.passed and report.refusals[0].startswith("guarantee: the challenger's policy is provisional")


def test_triage_gate_exits_1_with_the_reasons_when_it_refuses(
    bundle_dir: Path, generated_dir: Path, recent_labels: pd.DataFrame, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from triage.cli import app

    weak = _copy(bundle_dir, tmp_path, "weak")
    _reverse_calibrators(weak)
    recent_labels.to_parquet(tmp_path / "gate.parquet")
    whole = pd.read_parquet(generated_dir / "reviews.parquet")
    whole[~whole["listing_id"].isin(recent_labels["listing_id"])].to_parquet(tmp_path / "train.parquet")
    common = ["--labels", str(tmp_path / "gate.parquet"), "--champion", str(bundle_dir), "--no-register"]
    refused = CliRunner().invoke(app, ["gate", "--challenger", str(weak), *common])
    history = ["--history", str(tmp_path / "train.parquet")]
    passed = CliRunner().invoke(app, ["gate", "--challenger", str(bundle_dir), *common, *history, "--json"])
    no_file = ["--labels", str(tmp_path / "none.parquet"), "--champion", str(bundle_dir)]
    missing = CliRunner().invoke(app, ["gate", "--challenger", str(weak), *no_file])

    assert refused.exit_code == 1 and "REFUSED:" in refused.output and "roc_auc:" in refused.output
    assert passed.exit_code == 0 and json.loads(passed.output)["passed"] is True
    assert missing.exit_code == 2 and "none.parquet" in missing.output


def test_triage_gate_reads_a_csv_of_labels_as_its_parquet(
    bundle_dir: Path, recent_labels: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A market "NA" (North America) is a value, not a missing one, in any text column: the gate compares
    # the models on the rows of a CSV of labels as on the same rows in Parquet.
    from typer.testing import CliRunner

    import training.promotion
    from triage.cli import app

    every_third = np.arange(len(recent_labels)) % 3 == 0
    labels = recent_labels.assign(
        description=np.where(every_third, "NA", recent_labels["description"]),
        market=recent_labels["market"].replace({"US": "NA"}),
    )
    labels.to_parquet(tmp_path / "gate.parquet")
    labels.to_csv(tmp_path / "gate.csv", index=False)
    compared: list[pd.DataFrame] = []
    run_gate = training.promotion.run_gate

    def recording_gate(
        challenger: Path, champion: Path | None, rows: pd.DataFrame, known: pd.DataFrame | None = None
    ) -> Any:
        compared.append(rows)
        return run_gate(challenger, champion, rows, known)

    monkeypatch.setattr(training.promotion, "run_gate", recording_gate)
    reports = []
    for name in ("gate.parquet", "gate.csv"):
        args = ["gate", "--challenger", str(bundle_dir), "--champion", str(bundle_dir), "--no-register", "--json"]
        result = CliRunner().invoke(app, [*args, "--labels", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.output)["challenger"])
    for column in ("listing_id", "market", "description"):
        assert compared[1][column].tolist() == compared[0][column].tolist() == labels[column].tolist()
    assert reports[0] == reports[1]
