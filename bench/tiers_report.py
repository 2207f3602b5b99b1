"""The table of `make bench-tiers`: model / limit / oracle side by side per policy, the targets met or not."""

from __future__ import annotations

from typing import Any

import numpy as np

SCORERS = {
    "model_calibration": "model, certified on calibration (test held out)",
    "model_shipped": "model, shipped: certified on calibration + test (in-sample here)",
    "model_no_slack": "model's risks, no slack (diagnostic: thresholds fitted to the test labels)",
    "limit": "limit (limit_risk), no slack",
    "oracle": "oracle (true_risk), no slack",
}
RATIO_TARGET = 0.8
VALIDITY_SHARE_TARGET = 0.95
POLICY_TITLES = {
    "tiered": "Tiered policy: severe recall 0.99, minor recall 0.90, block precision 0.98",
    "single": "Single target (tiers=False): recall 0.99 over every violation, block precision 0.98",
}


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def mean_scorer(runs: list[dict[str, Any]], scorer: str) -> dict[str, Any]:
    """A scorer's figures averaged over seeds (recalls per tier too); `holds` is true only if it held in all."""
    rows = [r["scorers"][scorer] for r in runs]
    tiers = list(rows[0]["recall"])
    out: dict[str, Any] = {
        k: _mean([r[k] for r in rows])
        for k in ("auto_pass_share", "auto_block_share", "auto_decided_share", "block_precision")
    }
    out["recall"] = {t: _mean([r["recall"][t] for r in rows]) for t in tiers}
    out["expected_recall"] = {t: _mean([r["expected_recall"][t] for r in rows]) for t in tiers}
    out["expected_block_precision"] = _mean([r["expected_block_precision"] for r in rows])
    out["holds_labels"] = all(all(r["holds_labels"].values()) for r in rows)
    out["holds_expected"] = all(all(r["holds_expected"].values()) for r in rows)
    return out


def scorer_table(scorers: dict[str, dict[str, Any]], tiers: list[str]) -> list[str]:
    head = (
        "| scorer | auto-pass | auto-block | auto-decided | x limit | "
        + " | ".join(f"{t} recall (labels / expected)" for t in tiers)
        + " | block precision (labels / expected) | targets hold (labels / expected) |"
    )
    lines = [head, "|" + "---|" * (7 + len(tiers))]
    limit = scorers["limit"]["auto_decided_share"]
    for key, title in SCORERS.items():
        if key not in scorers:  # results from before a scorer was added
            continue
        s = scorers[key]
        ratio = s["auto_decided_share"] / limit if limit else None
        recalls = " | ".join(f"{_num(s['recall'][t])} / {_num(s['expected_recall'][t])}" for t in tiers)
        lines.append(
            f"| {title} | {_pct(s['auto_pass_share'])} | {_pct(s['auto_block_share'], 2)} | "
            f"{_pct(s['auto_decided_share'])} | {_num(ratio, 2)} | {recalls} | "
            f"{_num(s['block_precision'])} / {_num(s['expected_block_precision'])} | "
            f"{_holds(key, s)} |"
        )
    return lines


def _holds(scorer: str, figures: dict[str, Any]) -> str:
    """The model's targets judged by labels and by expectation; the limit's and oracle's thresholds are
    fitted to these labels (they hold there by construction; in expectation they need not)."""
    if scorer in ("model_calibration", "model_shipped"):
        return f"{_yes(figures['holds_labels'])} / {_yes(figures['holds_expected'])}"
    return f"fitted to these labels / {_yes(figures['holds_expected'])}"


def _yes(value: bool | dict[str, bool]) -> str:
    held = all(value.values()) if isinstance(value, dict) else value
    return "yes" if held else "NO"


def policy_section(policy: str, runs: list[dict[str, Any]]) -> list[str]:
    tiers = list(runs[0]["targets"]["recall"])
    seeds = [r["seed"] for r in runs]
    lines = [f"## {POLICY_TITLES[policy]}", ""]
    means = {key: mean_scorer(runs, key) for key in SCORERS if key in runs[0]["scorers"]}
    lines += [f"Test split, mean of seeds {seeds} ({runs[0]['test_rows']:,} test rows each):", ""]
    lines += scorer_table(means, tiers) + [""]
    for key in ("model_calibration", "model_shipped"):
        ratio = means[key]["auto_decided_share"] / means["limit"]["auto_decided_share"]
        per_seed = ", ".join(f"{r['scorers'][key]['ratio_to_limit']:.2f}" for r in runs)
        verdict = "MET" if ratio >= RATIO_TARGET else "NOT MET"
        lines.append(
            f"- {verdict}: {SCORERS[key]}: auto-decided {ratio:.2f}x the limit's (target >= {RATIO_TARGET}); "
            f"per seed {per_seed}"
        )
    lines.append(
        f"- auto-block share, model (calibration) vs limit: {_pct(means['model_calibration']['auto_block_share'], 2)}"
        f" vs {_pct(means['limit']['auto_block_share'], 2)}; with the default review rules the model's "
        f"auto-decided share is {_pct(_mean([r['model_with_rules_calibration']['auto_decided_share'] for r in runs]))}"
    )
    lines += ["", "Per seed:", ""]
    for run in runs:
        cert = run["certification"].get("thresholds_evaluated", {})
        needs = ", ".join(
            f"{t}: {c['n_violating']} calibration violations (needs {c['violations_needed']})"
            for t, c in cert.get("tiers", {}).items()
        )
        lines += [
            f"Seed {run['seed']} (search trials {run['search_trials']}, trained in {run['train_seconds']:.0f} s; "
            f"calibration-only certificate: feasible {cert.get('feasible')}, block certified "
            f"{cert.get('block_certified')}{'; ' + needs if needs else ''}):",
            "",
            *scorer_table(run["scorers"], tiers),
            "",
        ]
    return lines


def validity_section(runs: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    lines = [
        f"## Validity: fresh seeds at {runs[0]['rows']:,} rows, default tiered policy, thresholds certified on "
        "calibration only",
        "",
        f"{len(runs)} seeds {summary['seeds'][0]}-{summary['seeds'][-1]} at {runs[0]['rows']:,} rows "
        f"(search trials {runs[0]['search_trials']}); the calibration-only certificate was feasible in "
        f"{summary['feasible_seeds']} of them (an infeasible one auto-passes nothing, so its recall holds trivially).",
        "",
    ]
    for judge, title in (("expected", "the oracle's expectation"), ("labels", "the test labels")):
        share = summary[f"share_all_hold_{judge}"]
        verdict = "MET" if share >= VALIDITY_SHARE_TARGET else "NOT MET"
        if not summary["feasible_seeds"]:
            verdict = "VACUOUS (no seed certified anything, so nothing could fail)"
        lines.append(
            f"- {verdict}: every certified target holds, judged by {title}, in {_pct(share, 0)} of seeds "
            f"(target >= {VALIDITY_SHARE_TARGET:.0%}); failed seeds: {summary[f'failed_seeds_{judge}'] or 'none'}"
        )
    tiers = list(runs[0]["targets"]["recall"])
    lines += [
        "",
        "| seed | feasible | auto-decided | "
        + " | ".join(f"{t} recall (labels / expected)" for t in tiers)
        + " | block precision (labels / expected) | hold (labels / expected) |",
        "|" + "---|" * (5 + len(tiers)),
    ]
    for run in runs:
        m = run["scorers"]["model_calibration"]
        recalls = " | ".join(f"{_num(m['recall'][t])} / {_num(m['expected_recall'][t])}" for t in tiers)
        lines.append(
            f"| {run['seed']} | {run['certification']['thresholds_evaluated']['feasible']} | "
            f"{_pct(m['auto_decided_share'])} | {recalls} | {_num(m['block_precision'])} / "
            f"{_num(m['expected_block_precision'])} | {_yes(m['holds_labels'])} / {_yes(m['holds_expected'])} |"
        )
    return lines


def render(results: dict[str, Any]) -> str:
    """The whole report as Markdown (what the script prints, and what RESULTS_TIERS.md keeps)."""
    lines = [f"Command: `{results['meta']['command']}` ({results['meta']['machine']})", ""]
    for policy in ("tiered", "single"):
        if results.get(policy):
            lines += policy_section(policy, results[policy])
    if results.get("validity"):
        lines += validity_section(results["validity"], results["validity_summary"])
    return "\n".join(lines)
