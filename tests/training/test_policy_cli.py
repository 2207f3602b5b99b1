"""`triage thresholds` and `triage simulate` (training.policy_cli) on a bundle's reference set."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from bundle.manifest import verify_manifest
from bundle.policies import load_policy, policy_versions, save_policy
from decision.audit import AuditPlan
from decision.policy import Policy
from decision.rules import Rule
from tests.decision.test_thresholds import draw


@pytest.fixture()
def fake_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    frame = draw(20_000, 11)
    frame["category"] = np.where(np.arange(len(frame)) % 3, "toys", "pharmacy")
    frame["market"] = "de"
    frame["created_at"] = pd.Timestamp("2025-01-01")
    frame.to_parquet(bundle / "reference.parquet", index=False)
    save_policy(
        bundle,
        Policy(
            version="policy-20250101T000000-1",
            t_pass=0.01,
            t_block=0.99,
            qa_sample_rate=0.05,
            rules=[Rule("regulated", "review", "category", column="category", values=["pharmacy"])],
            audit=AuditPlan(near_rate=0.3, block_rate=0.2),
        ),
    )
    return bundle


def _app():
    import typer

    from training import policy_cli

    app = typer.Typer()
    app.command("thresholds")(policy_cli.thresholds)
    app.command("simulate")(policy_cli.simulate)
    return app


def test_cli_thresholds_writes_a_new_version_keeping_rules(fake_bundle: Path) -> None:
    result = CliRunner().invoke(
        _app(), ["thresholds", "--bundle", str(fake_bundle), "--recall", "0.95", "--block-precision", "0.95"]
    )
    assert result.exit_code == 0, result.output
    policy = load_policy(fake_bundle)
    assert policy.version != "policy-20250101T000000-1" and policy.version.endswith("-2")
    assert policy.rules[0].name == "regulated" and policy.qa_sample_rate == 0.05
    assert policy.audit == AuditPlan(near_rate=0.3, block_rate=0.2)  # the audit rates in force carry over
    assert policy.guarantee["recall_lower"] >= 0.95
    assert policy_versions(fake_bundle)[0] == "policy-20250101T000000-1"
    verify_manifest(fake_bundle)
    # where it takes effect: a policy put in force through a service's API keeps deciding there
    assert "PUT /v1/policy" in " ".join(result.output.split())


def test_cli_thresholds_keeps_the_confidence_split_training_planned(fake_bundle: Path) -> None:
    """The split of delta recorded by training was planned on other rows, so re-certifying on the reference
    keeps it: with no block share nothing is auto-blocked and recall gets all of delta."""
    current = load_policy(fake_bundle)
    planned = {"block": 0.0, "tiers": [1.0]}
    save_policy(fake_bundle, replace(current, version="policy-20250101T000000-2", targets={"alpha_split": planned}))
    result = CliRunner().invoke(
        _app(), ["thresholds", "--bundle", str(fake_bundle), "--recall", "0.95", "--block-precision", "0.95"]
    )
    assert result.exit_code == 0, result.output
    policy = load_policy(fake_bundle)
    assert policy.targets["alpha_split"] == planned and policy.t_block == 1.0
    assert "recall of the violations at 95% confidence" in policy.targets["split"]
    assert "confidence budget went to the recall targets" in result.output


def test_cli_thresholds_infeasible_exits_1_with_plain_message(fake_bundle: Path) -> None:
    result = CliRunner().invoke(_app(), ["thresholds", "--bundle", str(fake_bundle), "--recall", "0.99999"])
    assert result.exit_code == 1
    assert "Infeasible" in result.output and "closest achievable" in result.output
    assert load_policy(fake_bundle).version == "policy-20250101T000000-1"


def test_cli_simulate_json_table_and_sweep(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    rng = np.random.default_rng(2)
    risk = rng.beta(0.5, 3, 5000)
    pd.DataFrame(
        {
            "risk": risk,
            "label": (rng.random(len(risk)) < risk).astype(int),
            "review_seconds": 45.0,
            "category": "toys",
            "market": "de",
            "created_at": pd.Timestamp("2025-01-01"),
        }
    ).to_parquet(bundle / "reference.parquet")
    save_policy(bundle, Policy(version="policy-20250101T000000-1", t_pass=0.02, t_block=0.95, qa_sample_rate=0.001))
    runner = CliRunner()
    out = runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--json", "--daily-volume", "2000"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["policy"] == "policy-20250101T000000-1" and data["t_pass"] == 0.02 and data["daily_volume"] == 2000
    what_if = json.loads(
        runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--json", "--t-pass", "0.1"]).output
    )
    assert what_if["t_pass"] == 0.1 and what_if["queue_share"]["value"] < data["queue_share"]["value"]
    # an infeasible target says so on stderr: stdout stays one JSON document
    infeasible = runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--json", "--recall", "0.99999"])
    assert infeasible.exit_code == 0 and "Infeasible" in infeasible.stderr
    assert json.loads(infeasible.stdout)["t_pass"] == 0.0
    for option in ("--daily-volume", "--productive-hours-per-fte"):  # infinite inputs gave Infinity FTE
        assert runner.invoke(_app(), ["simulate", "--bundle", str(bundle), option, "inf"]).exit_code == 2
    table = runner.invoke(
        _app(),
        [
            "simulate",
            "--bundle",
            str(bundle),
            "--sweep",
            str(tmp_path / "sweep"),
            "--prevalence-multiplier",
            "2",
        ],
    )
    assert table.exit_code == 0, table.output
    assert "reviewer-hours/day" in table.output
    assert (tmp_path / "sweep" / "curve.csv").is_file() and (tmp_path / "sweep" / "curve.png").is_file()
    nothing_blocked = runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--t-block", "1.0"])
    assert nothing_blocked.exit_code == 0, nothing_blocked.output
    row = next(line for line in nothing_blocked.output.splitlines() if "block precision" in line)
    assert "n/a" in row and "nan" not in nothing_blocked.output  # no precision of no blocks


def test_cli_simulate_takes_the_target_not_given_from_the_policy_in_force(tmp_path: Path) -> None:
    """`simulate --block-precision 0.9` alone keeps the policy's recall target (0.95 here), as the
    thresholds it would certify at both targets given; only without a policy target do the defaults stand in."""
    from decision.thresholds import choose_policy_thresholds

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    rng = np.random.default_rng(5)
    risk = rng.beta(0.5, 3, 20_000)
    reference = pd.DataFrame(
        {"risk": risk, "label": (rng.random(len(risk)) < risk).astype(int), "review_seconds": 45.0}
    )
    reference.to_parquet(bundle / "reference.parquet")
    targets = {"recall": 0.95, "block_precision": 0.98, "confidence": 0.95}
    save_policy(bundle, Policy(version="policy-20250101T000000-1", t_pass=0.02, t_block=0.95, targets=targets))
    runner = CliRunner()

    def simulated(*options: str) -> dict:
        result = runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--json", *options])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    block_only = simulated("--block-precision", "0.9")
    both = simulated("--recall", "0.95", "--block-precision", "0.9")
    expected = choose_policy_thresholds(reference, recall=0.95, block_precision=0.9)
    assert block_only["t_pass"] == both["t_pass"] == pytest.approx(expected.t_pass)
    assert block_only["t_block"] == both["t_block"] == pytest.approx(expected.t_block)
    assert simulated("--recall", "0.95")["t_block"] == pytest.approx(
        choose_policy_thresholds(reference, recall=0.95, block_precision=0.98).t_block
    )
    save_policy(bundle, Policy(version="policy-20250101T000000-2", t_pass=0.02, t_block=0.95))  # states no targets
    assert simulated("--block-precision", "0.9")["t_pass"] == pytest.approx(
        choose_policy_thresholds(reference, recall=0.99, block_precision=0.9).t_pass
    )


def test_target_mode_takes_the_target_not_given_from_the_policy_the_cli_and_the_api_alike() -> None:
    """`decision.simulate.target_mode_targets`, behind both `triage simulate` and `GET /v1/simulate`."""
    from decision.simulate import target_mode_targets

    single = Policy("p", 0.01, 0.99, targets={"recall": 0.95, "block_precision": 0.97})
    tiered = Policy("p", 0.01, 0.99, targets={"recall": {"severe": 0.99, "minor": 0.9}, "block_precision": 0.97})
    assert target_mode_targets(single, None, 0.9) == (0.95, 0.9, None)
    assert target_mode_targets(single, 0.96, None) == (0.96, 0.97, None)
    assert target_mode_targets(Policy("p", 0.01, 0.99), None, 0.9) == (0.99, 0.9, None)
    assert target_mode_targets(None, 0.9, None) == (0.9, 0.98, None)
    recall, precision, note = target_mode_targets(tiered, None, 0.9)
    assert (recall, precision) == (0.99, 0.9) and note is not None and "per tier" in note


def test_cli_simulate_names_the_rules_it_could_not_apply(tmp_path: Path) -> None:
    """A text rule in force reads a column the reference set does not keep: the simulator left it out and
    said nothing (auto-pass 51.6% where the backtest showed 25.2%)."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    rng = np.random.default_rng(2)
    risk = rng.beta(0.5, 3, 2000)
    pd.DataFrame({"risk": risk, "label": (rng.random(len(risk)) < risk).astype(int), "category": "toys"}).to_parquet(
        bundle / "reference.parquet"
    )
    rules = [
        {"name": "in_title", "action": "review", "kind": "term", "terms": ["replica"], "fields": ["title"]},
        {"name": "toys", "action": "review", "kind": "term", "terms": ["toys"], "fields": ["category"]},
    ]
    from decision.rules import Rule

    parsed = [Rule.from_dict(rule, "rules") for rule in rules]
    save_policy(bundle, Policy(version="p-1", t_pass=0.02, t_block=0.95, qa_sample_rate=0.01, rules=parsed))
    runner = CliRunner()
    data = json.loads(runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--json"]).stdout)
    assert data["rules_not_applied"] == ["in_title"]
    assert data["auto_pass_share"]["value"] == 0.0  # the category rule was applied: every listing to review
    table = runner.invoke(_app(), ["simulate", "--bundle", str(bundle)])
    assert "rules in force not applied: in_title" in " ".join(table.output.split())


def test_simulate_replays_rules_on_text_and_product_matches_from_the_bundles_history(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """The reference set keeps no text and no product matches, so a match or title rule was left out of
    the simulation (an SMS bundle showed 11.1% auto-block where its repost rule sends 8.3 points of it to
    review). The bundle's history holds those columns for the same listings: now every rule is replayed."""
    import shutil

    from bundle.load import HISTORY_FILE, REFERENCE_FILE, read_reference
    from features.config import load_config
    from features.identify import PRODUCT_MATCH

    bundle = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bundle)
    config = load_config(bundle / "data_config.yaml")
    reference = read_reference(bundle, config.id, config.listing_columns)
    history = pd.read_parquet(bundle / HISTORY_FILE).set_index(config.id)
    # the columns a rule may read, not the outcome columns history also holds
    assert "violation_reason" in history and "violation_reason" not in reference
    same_rows = history.loc[reference["listing_id"]]
    assert list(reference["listing_id"]) == list(pd.read_parquet(bundle / REFERENCE_FILE)["listing_id"])
    np.testing.assert_array_equal(reference["risk"].to_numpy(), same_rows["risk"].to_numpy())  # the same listings
    assert reference[PRODUCT_MATCH].tolist() == same_rows[PRODUCT_MATCH].tolist()
    assert reference["title"].tolist() == same_rows["title"].tolist()

    reposts = reference[PRODUCT_MATCH].str.split().map(lambda found: "repost" in found)
    titled = reference["title"].str.lower().str.contains(r"\bnew\b")  # the term rule matches whole words
    assert 0 < reposts.mean() < 1 and 0 < titled.mean() < 1
    rules = [
        Rule(name="reposts", action="block", kind="match", values=["repost"]),
        Rule.from_dict({"name": "new", "action": "review", "kind": "term", "terms": ["new"], "fields": ["title"]}),
    ]
    save_policy(bundle, Policy(version="p-rules", t_pass=0.5, t_block=1.0, rules=rules))  # only a rule blocks
    data = json.loads(CliRunner().invoke(_app(), ["simulate", "--bundle", str(bundle), "--json"]).stdout)

    passes = (reference["risk"] < 0.5) & ~titled & ~reposts
    assert data["rules_not_applied"] == []
    assert data["auto_block_share"]["value"] == pytest.approx(reposts.mean())
    assert data["auto_pass_share"]["value"] == pytest.approx(passes.mean())
    assert data["queue_share"]["value"] == pytest.approx(1 - reposts.mean() - passes.mean())
    assert (titled & ~reposts & (reference["risk"] < 0.5)).any()  # the title rule sent some passes to review


def test_target_mode_keeps_the_audit_plan_in_force(tmp_path: Path) -> None:
    """`--recall` chose thresholds with the 2% floor alone: the audit workload shown was about a twentieth
    of the policy in force's (floor 65%)."""
    from decision.audit import AuditPlan

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    rng = np.random.default_rng(5)
    risk = rng.beta(0.5, 3, 5000)
    pd.DataFrame({"risk": risk, "label": (rng.random(len(risk)) < risk).astype(int)}).to_parquet(
        bundle / "reference.parquet"
    )
    plan = AuditPlan(near_rate=0.5, block_rate=0.4)
    save_policy(bundle, Policy(version="p-1", t_pass=0.02, t_block=0.95, qa_sample_rate=0.3, audit=plan))
    data = json.loads(
        CliRunner().invoke(_app(), ["simulate", "--bundle", str(bundle), "--json", "--recall", "0.9"]).stdout
    )
    assert data["policy"] == "what-if" and data["qa_sample_rate"] == 0.3
    assert data["qa_per_day"] > 0.3 * data["auto_pass_share"]["value"] * data["daily_volume"]


def test_cli_simulate_tiered_prints_the_headline_first_then_tiers(tmp_path: Path) -> None:
    from decision.simulate import simulate_policy

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    rng = np.random.default_rng(5)
    n = 6000
    risk = rng.beta(0.5, 3, n)
    label = (rng.random(n) < risk).astype(int)
    tier = np.where(label == 1, rng.choice(["severe", "minor"], n), "")
    reference = pd.DataFrame(
        {
            "risk": risk,
            "label": label,
            "tier": tier,
            "risk_severe": np.clip(risk * np.where(tier == "severe", 1.0, 0.4), 0, 1),
            "risk_minor": np.clip(risk * np.where(tier == "minor", 1.0, 0.4), 0, 1),
            "review_seconds": 45.0,
        }
    )
    reference.to_parquet(bundle / "reference.parquet")
    policy = Policy(
        version="policy-20250101T000000-1",
        t_pass=0.5,
        t_block=0.95,
        qa_sample_rate=0.001,
        tier_pass={"severe": 0.02, "minor": 0.05},
        targets={"recall": {"severe": 0.99, "minor": 0.9}, "block_precision": 0.95},
    )
    save_policy(bundle, policy)
    runner = CliRunner()
    shown = runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--daily-volume", "2000"])
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert text.index("decided automatically") < text.index("by violation tier") < text.index("reviewer-hours/day")
    assert "FTE saved vs reviewing all" in text and "severe" in text and "0.99" in text

    data = json.loads(
        runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--json", "--daily-volume", "2000"]).output
    )
    expected = simulate_policy(reference, policy, daily_volume=2000).to_dict()
    assert data["headline"] == expected["headline"] and data["tiers"] == expected["tiers"]
    assert [(t["name"], t["recall_target"], t["t_pass"]) for t in data["tiers"]] == [
        ("severe", 0.99, 0.02),
        ("minor", 0.9, 0.05),
    ]

    moved = runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--json", "--tier-pass", "severe:0.001"])
    assert moved.exit_code == 0, moved.output
    tiers = {t["name"]: t for t in json.loads(moved.output)["tiers"]}
    assert (tiers["severe"]["t_pass"], tiers["minor"]["t_pass"]) == (0.001, 0.05)
    for bad in ("severe", "severe:2", "gone:0.1"):
        refused = runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--tier-pass", bad])
        assert refused.exit_code == 2 and "tier" in refused.output, refused.output
    # as the API: a tier named twice, or thresholds and targets together, are refused rather than one guessed
    twice = runner.invoke(
        _app(), ["simulate", "--bundle", str(bundle), "--tier-pass", "severe:0.01", "--tier-pass", "severe:0.02"]
    )
    assert twice.exit_code == 2 and "named twice" in twice.output, twice.output
    both = runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--recall", "0.97", "--t-pass", "0.01"])
    assert both.exit_code == 2 and "not both" in both.output, both.output


def _tiered_reference(n: int, seed: int) -> pd.DataFrame:
    """Calibrated-looking risks with each violation's tier and one risk per tier (a tier's own risk is the
    overall one for its violations, 0.4 of it for the rest)."""
    rng = np.random.default_rng(seed)
    risk = rng.beta(0.5, 3, n)
    label = (rng.random(n) < risk).astype(int)
    tier = np.where(label == 1, rng.choice(["severe", "minor"], n), "")
    return pd.DataFrame(
        {
            "risk": risk,
            "label": label,
            "tier": tier,
            "risk_severe": risk * np.where(tier == "severe", 1.0, 0.4),
            "risk_minor": risk * np.where(tier == "minor", 1.0, 0.4),
            "review_seconds": 45.0,
        }
    )


def test_tiered_policies_show_each_tiers_pass_threshold_and_no_block_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`triage thresholds` and `triage simulate` printed 't_pass / t_block 1 / 1' for a tiered policy (its
    tiers' pass thresholds decide, not t_pass), and for t_block = 1 'auto-block 0.00% (0.00-0.03%)'; the
    headline's FTE saved left out the audits of automated decisions (65% of auto-passes on that bundle)."""
    from features.config import DataConfig
    from training.cli_output import console

    monkeypatch.setattr(console, "_width", 250)  # one table row per line
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    _tiered_reference(20_000, 7).to_parquet(bundle / "reference.parquet")
    (bundle / "data_config.yaml").write_text(yaml.safe_dump(DataConfig().to_dict(), sort_keys=False))
    policy = Policy(
        version="policy-20250101T000000-1",
        t_pass=float(np.nextafter(1.0, 0.0)),
        t_block=1.0,
        qa_sample_rate=0.65,
        tier_pass={"severe": 0.02, "minor": 0.05},
        targets={"recall": {"severe": 0.99, "minor": 0.9}, "block_precision": 0.98},
    )
    save_policy(bundle, policy)
    runner = CliRunner()

    shown = runner.invoke(_app(), ["simulate", "--bundle", str(bundle)])
    assert shown.exit_code == 0, shown.output
    lines = {line.split("│")[1].strip(): line for line in shown.output.splitlines() if line.count("│") >= 3}
    assert "t_block 1  pass thresholds per tier: 'minor' 0.05, 'severe' 0.02" in lines["thresholds"]
    assert "1 / 1" not in shown.output and "t_pass" not in lines["thresholds"]
    assert "none: cannot block" in lines["auto-block share"] and "none: cannot block" in lines["wrongful blocks/day"]
    data = json.loads(runner.invoke(_app(), ["simulate", "--bundle", str(bundle), "--json"]).output)
    assert data["can_block"] is False
    assert data["auto_block_share"] == data["wrongful_blocks_per_day"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    headline = data["headline"]
    net, gross, audits = (headline[k]["value"] for k in ("fte_saved", "fte_saved_gross", "audit_fte"))
    assert audits == pytest.approx(data["qa_hours_per_day"] / data["productive_hours_per_fte"])
    assert net == pytest.approx(gross - audits) and audits > 0.65 * gross
    (saved_row,) = [line for name, line in lines.items() if name.startswith("reviewer FTE saved")]
    assert "net of audits" in saved_row and f"{net:,.1f}" in saved_row
    assert f"{gross:,.1f}" in lines["saved before audits (FTE)"]
    assert f"{audits:,.1f}" in lines["audits of automated decisions (FTE)"]

    chosen = runner.invoke(_app(), ["thresholds", "--bundle", str(bundle), "--tier-recall", "severe:0.9"])
    assert chosen.exit_code == 0, chosen.output
    saved = load_policy(bundle)
    lines = {line.split("│")[1].strip(): line for line in chosen.output.splitlines() if line.count("│") >= 3}
    assert "t_block 1  pass thresholds per tier: " in lines["thresholds"] and "1 / 1" not in chosen.output
    assert all(f"'{name}' {value:.6g}" in lines["thresholds"] for name, value in saved.tier_pass.items())


def test_cli_thresholds_on_a_tiered_bundle_certifies_every_tier(bundle_dir: Path, tmp_path: Path) -> None:
    """The session bundle is tiered: --tier-recall changes one tier's target, the others keep the config's,
    and the new policy carries a threshold per tier; an unknown tier is refused naming it."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bundle)
    result = CliRunner().invoke(_app(), ["thresholds", "--bundle", str(bundle), "--tier-recall", "minor:0.8"])
    assert result.exit_code in (0, 1), result.output
    assert "thresholds (tiered)" in result.output and "severe 0.99, minor 0.8" in result.output
    if result.exit_code == 0:
        policy = load_policy(bundle)
        assert set(policy.tier_pass) == {"severe", "minor"}
        assert policy.targets["recall"] == {"severe": 0.99, "minor": 0.8}
    refused = CliRunner().invoke(_app(), ["thresholds", "--bundle", str(bundle), "--tier-recall", "nosuch:0.9"])
    assert refused.exit_code == 2 and "nosuch" in refused.output

    single = CliRunner().invoke(_app(), ["thresholds", "--bundle", str(bundle), "--single-tier", "--recall", "0.9"])
    assert single.exit_code in (0, 1), single.output
    assert "thresholds (guarantee)" in single.output


@pytest.fixture()
def fake_tiered_bundle(fake_bundle: Path) -> Path:
    """The fake bundle trained with the marketplace's tiers: a data config with tiers, and a reference
    with each violation's tier and a risk per tier."""
    from bundle.manifest import write_manifest
    from decision.tiers import NO_TIER, risk_column
    from features.config import DataConfig

    (fake_bundle / "data_config.yaml").write_text(yaml.safe_dump(DataConfig().to_dict(), sort_keys=False))
    reference = pd.read_parquet(fake_bundle / "reference.parquet")
    label = reference["label"].to_numpy().astype(bool)
    reference["tier"] = np.where(label, np.where(np.arange(len(label)) % 3, "severe", "minor"), NO_TIER)
    for name in ("severe", "minor"):
        reference[risk_column(name)] = reference["risk"]
    reference.to_parquet(fake_bundle / "reference.parquet", index=False)
    write_manifest(fake_bundle)
    return fake_bundle


def test_cli_thresholds_refuses_one_recall_target_on_a_tiered_bundle(fake_tiered_bundle: Path) -> None:
    """`--recall 0.95` on a tiered bundle certified the tiers' own targets (0.99 / 0.9), saved a new policy
    and exited 0: the target asked for was silently ignored. It is refused, naming the tiers' targets and
    the options that do what was meant; with --single-tier it is the one target."""
    refused = CliRunner().invoke(_app(), ["thresholds", "--bundle", str(fake_tiered_bundle), "--recall", "0.95"])
    assert refused.exit_code == 2, refused.output
    said = " ".join(refused.output.split())
    assert "--recall 0.95" in said and "(severe 0.99, minor 0.9)" in said
    assert "--tier-recall severe:0.95" in said and "--single-tier" in said
    assert load_policy(fake_tiered_bundle).version == "policy-20250101T000000-1"  # no policy saved

    single = CliRunner().invoke(
        _app(), ["thresholds", "--bundle", str(fake_tiered_bundle), "--single-tier", "--recall", "0.95"]
    )
    assert single.exit_code == 0, single.output
    assert load_policy(fake_tiered_bundle).targets["recall"] == 0.95
    tiered = CliRunner().invoke(
        _app(), ["thresholds", "--bundle", str(fake_tiered_bundle), "--tier-recall", "minor:0.85"]
    )
    assert tiered.exit_code == 0, tiered.output
    assert load_policy(fake_tiered_bundle).targets["recall"] == {"severe": 0.99, "minor": 0.85}


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--tier-recall", "minor:0.9", "--tier-recall", "minor:0.8"], "named twice"),
        (["--tier-recall", "minor:0.1"], "a recall target must be in [0.5, 1)"),
        (["--tier-recall", "minor:abc"], "recall target 'abc' is not a number"),
        (["--segment-by", "market"], "--single-tier"),
    ],
)
def test_cli_thresholds_refuses_what_it_would_have_saved_otherwise(
    fake_tiered_bundle: Path, args: list[str], said: str
) -> None:
    """A tier's target given twice (the last won), a recall target below what --recall takes, and per-segment
    thresholds on a tiered bundle (noted as not used, yet a policy was saved): refused, nothing saved."""
    result = CliRunner().invoke(_app(), ["thresholds", "--bundle", str(fake_tiered_bundle), *args])
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split())
    assert load_policy(fake_tiered_bundle).version == "policy-20250101T000000-1"


def test_cli_thresholds_shows_each_statements_own_confidence(fake_tiered_bundle: Path) -> None:
    """With the whole budget on the tiers (split 0.6 / 0.4, no block statement) the table said "recall ...
    (>= ..., 100.0% bound)": the block statement's confidence after it got none. The overall recall bound
    holds when every tier's does (95%), each tier's at its own (97%, 98%), and the block has no bound."""
    current = load_policy(fake_tiered_bundle)
    planned = {"block": 0.0, "tiers": [0.6, 0.4]}
    save_policy(
        fake_tiered_bundle, replace(current, version="policy-20250101T000000-2", targets={"alpha_split": planned})
    )
    result = CliRunner().invoke(
        _app(), ["thresholds", "--bundle", str(fake_tiered_bundle), "--tier-recall", "minor:0.85"]
    )
    assert result.exit_code == 0, result.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2] for line in result.output.splitlines() if line.count("│") == 3
    }
    assert "95.0% bound" in rows["recall"] and "100.0%" not in result.output
    assert "97.0% bound" in rows["recall severe"] and "98.0% bound" in rows["recall minor"]
    block = rows["block precision"]
    assert "nothing auto-blocked" in block or ("no statement" in block and "%" not in block)
    policy = load_policy(fake_tiered_bundle)
    assert policy.targets["split"].startswith("recall of severe at 97% confidence, recall of minor at 98% confidence")
    guarantee = policy.guarantee
    assert guarantee["recall_confidence"] == pytest.approx(0.95) and guarantee["block_confidence"] is None


def test_train_refuses_one_recall_target_on_a_tiered_config_before_any_work(tmp_path: Path) -> None:
    """`triage train --recall 0.95` on the tiered default config certified severe 0.99 / minor 0.9 without a
    word. It is refused before the data is even read (here it does not exist), naming the tiers' targets;
    with --single-tier, or a config without tiers, the run goes on (to the missing data)."""
    from features.config import DataConfig
    from triage.cli import app

    missing = str(tmp_path / "nosuch.parquet")
    refused = CliRunner().invoke(app, ["train", "--data", missing, "--no-mlflow", "--recall", "0.95"])
    assert refused.exit_code == 2
    said = " ".join(refused.output.split())
    assert "--recall 0.95" in said and "(severe 0.99, minor 0.9)" in said and "--single-tier" in said
    assert "nosuch.parquet" not in said

    untiered = tmp_path / "untiered.yaml"
    untiered.write_text(yaml.safe_dump({**DataConfig().to_dict(), "tiers": {}}, sort_keys=False))
    for extra in (["--single-tier"], ["--config", str(untiered)]):
        goes_on = CliRunner().invoke(app, ["train", "--data", missing, "--no-mlflow", "--recall", "0.95", *extra])
        assert goes_on.exit_code == 2 and "nosuch.parquet" in goes_on.output, goes_on.output


@pytest.mark.parametrize("column", ["category", "nosuch", "label"])
def test_cli_thresholds_refuses_segments_of_a_column_the_data_config_does_not_list(
    fake_bundle: Path, column: str
) -> None:
    """Per-segment thresholds need a column listed under `segments` in the bundle's data config: the
    refusal names the listed columns instead of failing on a column missing from the reference set (or
    splitting by an outcome the reference set happens to hold)."""
    from features.config import DataConfig

    config = replace(DataConfig(), segments=("market",))
    (fake_bundle / "data_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    result = CliRunner().invoke(_app(), ["thresholds", "--bundle", str(fake_bundle), "--segment-by", column])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert f"per-segment thresholds by {column!r}: the column must be listed under 'segments'" in output
    assert "which lists 'market'" in output and "reference" not in output
    assert load_policy(fake_bundle).version == "policy-20250101T000000-1"
    listed = CliRunner().invoke(_app(), ["thresholds", "--bundle", str(fake_bundle), "--segment-by", "market"])
    assert listed.exit_code == 0, listed.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["simulate", "--t-pass", "nan"], "'nan' is not a number from 0 to 1"),
        (["simulate", "--t-block", "1.5"], "'1.5' is not a number from 0 to 1"),
        (["simulate", "--recall", "inf"], "'inf' is not a number from 0.5 to 0.99999"),
        (["thresholds", "--block-precision", "nan"], "'nan' is not a number from 0.5 to 0.99999"),
        (["train", "--recall", "abc"], "'abc' is not a number"),
    ],
)
def test_a_threshold_or_target_that_is_not_a_number_in_range_is_refused_saying_so(args: list[str], said: str) -> None:
    """`--t-pass nan` was refused with typer's "Input should be less than or equal to 1", which it is not."""
    from triage.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert said in " ".join(result.output.replace("│", " ").split())  # the error box may wrap the message
