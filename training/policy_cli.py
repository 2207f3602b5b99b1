"""`triage thresholds` and `triage simulate`: plain Typer-annotated functions registered on `triage` by triage.cli."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
import yaml
from rich.markup import escape
from rich.table import Table

from bundle.load import REFERENCE_FILE, read_reference
from bundle.manifest import BundleError, resolve_bundle, signing_key_from_env
from bundle.policies import load_policy, next_policy_version, save_policy
from decision.alpha_split import AlphaSplit
from decision.audit import MIN_AUDIT_RATE
from decision.guarantees import OperatingPoint
from decision.policy import Policy, thresholds_in_words
from decision.simulate import (
    WHAT_IF_VERSION,
    SimulationResult,
    parse_tier_values,
    reference_tiers,
    simulate_policy,
    sweep_policy,
    target_mode_policy,
    target_mode_targets,
    with_thresholds,
)
from decision.thresholds import ThresholdResult, choose_policy_thresholds
from decision.tiers import TierCertificate
from features.config import DataConfig, Tier
from training.cli_output import console, err_console, fail, note, number_between, range_help, recall_on_tiers
from training.plots import plot_curve

MIN_RECALL_TARGET = 0.5  # the least --recall and --tier-recall take (`Fraction`)

BundleOpt = Annotated[Path, typer.Option(help="bundle directory or the models/latest pointer")]
Fraction = Annotated[float, typer.Option(parser=number_between(0.5, 0.99999), help=range_help(0.5, 0.99999))]


def _load_reference(bundle: Path, rule_columns: bool = True) -> tuple[Path, pd.DataFrame]:
    """The bundle's directory and reference rows; with `rule_columns`, with the columns its rules read
    (`bundle.load.read_reference`: what the simulator replays)."""
    try:
        bundle_dir = resolve_bundle(bundle)
    except BundleError as exc:
        fail(exc)
    if not (bundle_dir / REFERENCE_FILE).is_file():
        fail(f"bundle {bundle_dir} has no {REFERENCE_FILE}")
    config = _bundle_config(bundle_dir) if rule_columns else None
    if config is None:
        return bundle_dir, pd.read_parquet(bundle_dir / REFERENCE_FILE)
    return bundle_dir, read_reference(bundle_dir, config.id, config.listing_columns)


def _current_policy(bundle_dir: Path) -> Policy | None:
    return load_policy(bundle_dir) if (bundle_dir / "policy.json").is_file() else None


def thresholds(
    bundle: BundleOpt = Path("models/latest"),
    recall: Annotated[
        float | None,
        typer.Option(
            parser=number_between(0.5, 0.99999),
            help=range_help(
                0.5,
                0.99999,
                "one recall target over every violation (default 0.99): untiered bundle, --single-tier, "
                "capacity or cost mode; a tiered bundle's targets are its tiers' (--tier-recall)",
            ),
        ),
    ] = None,
    block_precision: Fraction = 0.98,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.9999)] = 0.95,
    capacity_hours: Annotated[float | None, typer.Option(min=0, help="reviewer-hours per day (capacity mode)")] = None,
    daily_volume: Annotated[float | None, typer.Option(min=1, help="listings per day (capacity mode)")] = None,
    segment_by: Annotated[str | None, typer.Option(help="per-segment thresholds by this column")] = None,
    cost_review: Annotated[float | None, typer.Option(min=0, help="cost of one review (cost mode)")] = None,
    cost_miss: Annotated[float | None, typer.Option(min=0, help="cost of a missed violation")] = None,
    cost_wrong_block: Annotated[float | None, typer.Option(min=0, help="cost of a wrongful block")] = None,
    tier_recall: Annotated[
        list[str] | None,
        typer.Option(
            help="tiered bundle: a tier's recall target, 'tier:recall' (repeatable; others keep the config's)"
        ),
    ] = None,
    single_tier: Annotated[
        bool, typer.Option("--single-tier", help="tiered bundle: one --recall target over every violation")
    ] = False,
) -> None:
    """Choose guaranteed thresholds on the bundle's reference set and save them as a new policy version.

    On a tiered bundle, guarantee mode certifies every tier's recall target (the data config's, or
    --tier-recall) and the block precision together; --single-tier, capacity and cost modes use the
    overall risk alone."""
    bundle_dir, reference = _load_reference(bundle, rule_columns=False)  # certifies thresholds; no rule is replayed
    try:
        plain = single_tier or any(v is not None for v in (capacity_hours, cost_review, cost_miss, cost_wrong_block))
        config = _bundle_config(bundle_dir)
        if config is not None:
            config.check_segment_by(segment_by)
        tiers = () if plain else _bundle_tiers(config, bundle_dir, reference, tier_recall or [])
        if segment_by and tiers:  # the certificate is per tier, not per segment: saving it would drop the option
            fail(
                f"--segment-by: per-segment thresholds are certified for one recall target; bundle {bundle_dir} is "
                "tiered (each tier has its own): add --single-tier to certify one target per segment"
            )
        if tiers and recall is not None:
            fail(
                recall_on_tiers(
                    recall,
                    {t.name: t.recall for t in tiers},
                    f"bundle {bundle_dir} is tiered: its data config",
                    f"pass --tier-recall {tiers[0].name}:{recall:g} (repeatable)",
                )
            )
        # the split of delta training planned on its validation rows (never on these reference rows), so
        # it stays valid for any targets; a policy without one, or for another tier count, gets the default
        current = _current_policy(bundle_dir)
        split = AlphaSplit.from_dict(current.targets.get("alpha_split"), len(tiers)) if current else None
        result = choose_policy_thresholds(
            reference,
            recall=0.99 if recall is None else recall,
            block_precision=block_precision,
            delta=1 - confidence,
            segment_by=segment_by,
            capacity_hours=capacity_hours,
            daily_volume=daily_volume,
            cost_review=cost_review,
            cost_miss=cost_miss,
            cost_wrong_block=cost_wrong_block,
            tiers=tiers,
            alpha_split=split,
        )
    except ValueError as exc:
        fail(exc)
    console.print(_threshold_table(result))
    for text in result.notes:
        note(text)
    if not result.feasible:
        console.print(f"[red]{escape(result.message)}[/]")
        if result.closest is not None:
            console.print(_point_table(result.closest, "closest achievable point"))
        console.print("policy not changed")
        raise typer.Exit(code=1)
    policy = result.to_policy(
        rules=current.rules if current else [],
        qa_sample_rate=current.qa_sample_rate if current else 0.02,
        version=next_policy_version(bundle_dir),
    )
    if current is not None:  # the audit and review-quality rates stay as they were (training may have sized them)
        policy = replace(policy, audit=current.audit, quality=current.quality).validate()
    save_policy(bundle_dir, policy, signing_key_from_env())
    console.print(result.message)
    console.print(f"saved policy [bold]{policy.version}[/] to {escape(str(bundle_dir))}")
    note(
        "a service serving this bundle keeps the policy last put in force through its API, if there is one "
        "(GET /v1/policy/history); this version decides where there is none, from the next start or reload. "
        "To put these thresholds in force now, send them with PUT /v1/policy"
    )


def _bundle_config(bundle_dir: Path) -> DataConfig | None:
    """The data config the bundle was trained with (None for a bundle without one)."""
    config_file = bundle_dir / "data_config.yaml"
    if not config_file.is_file():
        return None
    origin = (
        f"the bundle was trained with the data config {config_file}: to choose thresholds per segment of "
        "another column, list it under 'segments' in the data config and train again"
    )
    return DataConfig.from_dict(yaml.safe_load(config_file.read_text()), origin=origin)


def _bundle_tiers(
    config: DataConfig | None, bundle_dir: Path, reference: pd.DataFrame, overrides: list[str]
) -> tuple[Tier, ...]:
    """The bundle's tiers with --tier-recall overrides; () for an untiered bundle (overrides refused)."""
    if config is None:
        if overrides:
            raise ValueError(f"--tier-recall: bundle {bundle_dir} has no data config, so no tiers")
        return ()
    tiers = config.tiers if config.tiered and "tier" in reference else ()
    try:
        recalls = parse_tier_values(overrides, "recall target")
    except ValueError as exc:
        raise ValueError(f"--tier-recall: {exc}") from None
    for name, value in recalls.items():
        if name not in {t.name for t in tiers}:
            raise ValueError(f"--tier-recall {name}: the bundle's tiers are {[t.name for t in tiers] or 'none'}")
        if not MIN_RECALL_TARGET <= value < 1.0:  # as --recall
            raise ValueError(f"--tier-recall {name}:{value:g}: a recall target must be in [{MIN_RECALL_TARGET}, 1)")
    return tuple(Tier(t.name, t.reasons, recalls.get(t.name, t.recall)) for t in tiers)


def simulate(
    bundle: BundleOpt = Path("models/latest"),
    t_pass: Annotated[
        float | None, typer.Option(parser=number_between(0, 1), help=range_help(0, 1, "default: the bundle's policy"))
    ] = None,
    t_block: Annotated[
        float | None, typer.Option(parser=number_between(0, 1), help=range_help(0, 1, "default: the bundle's policy"))
    ] = None,
    recall: Annotated[
        float | None,
        typer.Option(
            parser=number_between(0.5, 0.99999),
            help=range_help(0.5, 0.99999, "choose thresholds for this target; default: the policy's, else 0.99"),
        ),
    ] = None,
    block_precision: Annotated[
        float | None,
        typer.Option(
            parser=number_between(0.5, 0.99999),
            help=range_help(0.5, 0.99999, "choose thresholds for this target; default: the policy's, else 0.98"),
        ),
    ] = None,
    daily_volume: Annotated[float, typer.Option(min=1, max=1e10)] = 100_000,
    productive_hours_per_fte: Annotated[float, typer.Option(min=0.1, max=24)] = 6.5,
    prevalence_multiplier: Annotated[
        float, typer.Option(min=0.01, max=100, help="2 = what if violations double")
    ] = 1.0,
    tier_pass: Annotated[
        list[str] | None,
        typer.Option(help="tiered bundle: a tier's auto-pass threshold, 'tier:threshold' (repeatable)"),
    ] = None,
    sweep_dir: Annotated[Path | None, typer.Option("--sweep", help="write curve.csv and curve.png here")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Replay the bundle's reference set through a policy: share decided automatically and reviewer FTE
    saved, misses per day by tier, workload, misses and wrongful blocks per day."""
    bundle_dir, reference = _load_reference(bundle)
    policy = _policy_to_simulate(bundle_dir, reference, t_pass, t_block, recall, block_precision, tier_pass)
    try:
        result = simulate_policy(
            reference,
            policy,
            daily_volume=daily_volume,
            productive_hours_per_fte=productive_hours_per_fte,
            prevalence_multiplier=prevalence_multiplier,
        )
    except ValueError as exc:
        fail(exc)
    out: dict[str, Any] = {"bundle": str(bundle_dir), "policy": policy.version, **result.to_dict()}
    if sweep_dir is not None:
        curve = sweep_policy(
            reference,
            policy,
            daily_volume=daily_volume,
            productive_hours_per_fte=productive_hours_per_fte,
            prevalence_multiplier=prevalence_multiplier,
        )
        sweep_dir.mkdir(parents=True, exist_ok=True)
        curve.to_csv(sweep_dir / "curve.csv", index=False)
        plot_curve(curve, result, sweep_dir / "curve.png")
        out["sweep"] = {"csv": str(sweep_dir / "curve.csv"), "png": str(sweep_dir / "curve.png")}
    if json_out:
        typer.echo(json.dumps(out, indent=2, default=float))
        return
    console.print(_headline_table(result))
    if result.tiers:
        console.print(_tier_table(result))
    console.print(_simulation_table(result, policy))
    if result.rules_not_applied:
        note(
            f"rules in force not applied: {', '.join(result.rules_not_applied)} (they read columns the reference set "
            "does not keep: text, product matches); `triage rules backtest` replays them on scored rows"
        )
    if "sweep" in out:
        console.print(escape(f"curve: {out['sweep']['csv']}, {out['sweep']['png']}"))


def _policy_to_simulate(
    bundle_dir: Path,
    reference: pd.DataFrame,
    t_pass: float | None,
    t_block: float | None,
    recall: float | None,
    block_precision: float | None,
    tier_pass: list[str] | None = None,
) -> Policy:
    current = _current_policy(bundle_dir)
    if (recall is not None or block_precision is not None) and (tier_pass or t_pass is not None or t_block is not None):
        fail("give thresholds (--t-pass, --t-block, --tier-pass) or targets (--recall, --block-precision), not both")
    if recall is not None or block_precision is not None:
        recall, block_precision, target_note = target_mode_targets(current, recall, block_precision)
        if target_note:  # on stderr: --json keeps stdout one JSON document
            err_console.print(f"[yellow]{escape(target_note)}[/]")
        result = choose_policy_thresholds(reference, recall=recall, block_precision=block_precision)
        if not result.feasible:  # on stderr: --json keeps stdout one JSON document
            err_console.print(f"[yellow]{escape(result.message)}[/]")
        return target_mode_policy(result, current)
    if current is None and (t_pass is None or t_block is None):
        fail(f"bundle {bundle_dir} has no policy.json: give --t-pass and --t-block")
    base = current or Policy(version=WHAT_IF_VERSION, t_pass=0.0, t_block=1.0, qa_sample_rate=MIN_AUDIT_RATE)
    if t_pass is None and t_block is None and not tier_pass:
        return base
    try:
        tiers = parse_tier_values(tier_pass or [])
    except ValueError as exc:
        fail(f"--tier-pass: {exc}")
    try:
        return with_thresholds(base, reference_tiers(reference, scored_only=True), t_pass, t_block, tiers)
    except ValueError as exc:
        fail(exc)


def _threshold_table(result: ThresholdResult) -> Table:
    table = _point_table(
        result.point,
        f"thresholds ({result.mode})" + ("" if result.feasible else " - [red]targets not met[/]"),
        {tier.name: tier.t_pass for tier in result.tiers},
    )
    for tier in result.tiers:  # each tier's own statement, at its own confidence
        table.add_row(f"recall {tier.name}", _tier_text(tier))
    for key, value in result.targets.items():
        if key == "alpha_split":  # the machine-readable form of "split"
            continue
        if isinstance(value, dict):  # tiered: recall per tier
            table.add_row(f"target {key}", ", ".join(f"{k} {v:g}" for k, v in value.items()))
        elif isinstance(value, (int, float)):
            table.add_row(f"target {key}", f"{value:g}")
        else:
            table.add_row(f"target {key}", str(value))
    if result.segments:
        table.add_row("segments", f"{len(result.segments)} by {result.segment_by}")
    if result.segment_report:
        table.add_row("segment saving", f"{result.segment_report['relative_saving']:.1%} of the queue")
    return table


def _tier_text(tier: TierCertificate) -> str:
    if math.isnan(tier.recall):
        return f"no violations in the rows, {'certified' if tier.certified else 'NOT certified'}"
    bound = f">= {tier.recall_lower:.4f}, {1 - tier.alpha:.1%} bound" if tier.certified else "NOT certified"
    return f"{tier.recall:.4f}  ({bound}; target {tier.recall_target:g})"


def _point_table(point: OperatingPoint, title: str, tier_pass: dict[str, float] | None = None) -> Table:
    """`tier_pass`: a tiered policy's pass threshold per tier (they decide passing, not its t_pass)."""
    table = Table(title=title, show_header=True)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("thresholds", escape(thresholds_in_words(point.t_pass, point.t_block, tier_pass))),
        (
            "auto-pass / queue / auto-block",
            f"{point.auto_pass_share:.2%} / {point.queue_share:.2%} / {point.auto_block_share:.2%}",
        ),
        ("recall", f"{point.recall:.4f}  (>= {1 - point.miss_rate_upper:.4f}, {point.recall_confidence:.1%} bound)"),
        ("block precision", _block_text(point)),
        ("queue (calibration rows)", f"{point.queue_items:,} of {point.n:,}, {point.reviewer_hours:,.1f} h"),
        ("violating rows used", f"{point.n_violating:,}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _block_text(point: OperatingPoint) -> str:
    if not point.auto_blocked:
        return "nothing auto-blocked"
    if point.block_confidence is None:  # the split gave the block no budget (t_block 1: only risks of 1)
        return f"{point.block_precision:.4f}  (no statement)"
    return f"{point.block_precision:.4f}  (>= {point.block_precision_lower:.4f}, {point.block_confidence:.1%} bound)"


def _headline_table(result: SimulationResult) -> Table:
    """What a PM reads first: how much is decided without a person, and the reviewer time that saves."""
    headline = result.headline
    table = Table(title="headline", show_header=True)
    table.add_column("quantity")
    table.add_column("estimate", justify="right")
    table.add_column(f"{result.confidence:.0%} interval", justify="right")
    share = headline.auto_decided_share
    table.add_row(
        "decided automatically (auto-pass + auto-block)",
        f"{share.value:.1%}",
        f"{share.low:.1%} - {share.high:.1%}",
    )
    rows = (
        (
            f"reviewer FTE saved vs reviewing all {headline.fte_review_all.value:,.1f} FTE, net of audits",
            headline.fte_saved,
        ),
        ("  saved before audits (FTE)", headline.fte_saved_gross),
        ("  audits of automated decisions (FTE)", headline.audit_fte),
    )
    for name, fte in rows:
        table.add_row(name, f"{fte.value:,.1f}", f"{fte.low:,.1f} - {fte.high:,.1f}")
    return table


def _tier_table(result: SimulationResult) -> Table:
    table = Table(title="by violation tier", show_header=True)
    for name in ("tier", "recall target", "tier t_pass", "recall", "missed/day", "violations in reference"):
        table.add_column(name, justify="left" if name == "tier" else "right")
    for tier in result.tiers:
        recall, missed = tier.recall, tier.missed_violations_per_day
        table.add_row(
            tier.name,
            "-" if tier.recall_target is None else f"{tier.recall_target:g}",
            "-" if tier.t_pass is None else f"{tier.t_pass:.6g}",
            f"{recall.value:.4f} ({recall.low:.4f} - {recall.high:.4f})",
            f"{missed.value:,.1f} ({missed.low:,.1f} - {missed.high:,.1f})",
            f"{tier.n_violations:,}",
        )
    return table


def _simulation_table(result: SimulationResult, policy: Policy) -> Table:
    pct = f"{result.confidence:.0%}"
    table = Table(
        title=f"simulation: {policy.version}, {result.daily_volume:,.0f} listings/day "
        f"(prevalence x{result.prevalence_multiplier:g})"
    )
    table.add_column("quantity")
    table.add_column("estimate", justify="right")
    table.add_column(f"{pct} interval", justify="right")

    def add(name: str, est: Any, fmt: str, exact: str = "") -> None:
        if not math.isfinite(est.value):  # e.g. block precision when nothing is blocked
            table.add_row(name, "n/a", "")
            return
        interval = exact or f"{format(est.low, fmt)} - {format(est.high, fmt)}"
        table.add_row(name, format(est.value, fmt), interval)

    thresholds = thresholds_in_words(policy.t_pass, policy.t_block, policy.tier_pass) + (
        f" (+{len(policy.segments)} segments by {policy.segment_by})" if policy.segments else ""
    )
    table.add_row("thresholds", escape(thresholds), "")
    add("auto-pass share", result.auto_pass_share, ".2%")
    add("queue share", result.queue_share, ".2%")
    cannot_block = "" if result.can_block else "none: cannot block"
    add("auto-block share", result.auto_block_share, ".2%", cannot_block)
    add("queue listings/day", result.queue_per_day, ",.0f")
    add("reviewer-hours/day", result.reviewer_hours_per_day, ",.1f")
    add(f"FTE ({result.productive_hours_per_fte:g} h)", result.fte, ",.1f")
    add("missed violations/day", result.missed_violations_per_day, ",.1f")
    add("wrongful blocks/day", result.wrongful_blocks_per_day, ",.1f", cannot_block)
    add("recall", result.recall, ".4f")
    add("block precision", result.block_precision, ".4f")
    if result.qa_sample_rate:
        table.add_row(
            f"audits (floor {result.qa_sample_rate:.1%} of auto, more near t_pass and on blocks)",
            f"{result.qa_per_day:,.0f}/day",
            f"{result.qa_hours_per_day:,.1f} h/day",
        )
    return table
