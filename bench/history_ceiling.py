"""The history-reachable ceiling of a tiered policy: what any scoring model could auto-decide, at best,
on the built-in data, set beside the reachable limit of `bench/bench_tiers.py`.

    python bench/history_ceiling.py [--rows 200000] [--seeds 0 1 2] [--out JSON]

The limit (`limit_risk`, the generator's risk with the per-listing ambiguity integrated out) is
E[true_risk | features, q]: it knows each merchant's latent quality q. A model sees q only through what
the data shows of it. This script computes, for every listing, the exact Bayes risk given that, with no
learning error:

    ceiling_tier = E[limit_risk_tier(features, q) | features, evidence] = sum_q post(q) limit_risk_tier(features, q)

post(q) is the posterior of the merchant's q on a grid (GRID_STEP apart, covering the prior's mass; the
prior is the generator's mixture: N(0, 0.4^2) for ordinary merchants, N(1.8, 0.4^2) for the
OFFENDER_SHARE repeat offenders). The evidence is everything the generated data shows about q when the
listing is created, taken point-in-time as the product's merchant history is (features/merchant.py):
- every earlier ordinary listing of the merchant reviewed strictly before: the likelihood of its label,
  recorded reason and review_seconds given its features and q, the ambiguity integrated out by
  Gauss-Hermite quadrature (the product's features use only the counts of rejections);
- the scheme and certificate of every listing of the merchant created up to this one, this one
  included: offenders run schemes 7x as often and hold certificates 0.55x as often. The scheme is taken
  as observed (a model reads it from text, imperfectly), so this can only raise the ceiling;
- the merchant's join date (offenders' accounts are newer).
Re-posts (1% of the rows) are scored by `limit_risk` itself, which also knows q: again this can only
raise the ceiling. Their verdicts are left out of the merchants' evidence (a re-post repeats its
original's truth, whose verdict is already in).

So the ceiling bounds from above what any model of the generated columns can reach; where even it,
certified as the product certifies, falls short of a share, no model will reach that share.

"shipped_planned" certifies as the product ships its policy, on calibration + test at the planned split,
and is judged on the same test rows (in-sample for them, as `bench_tiers`' "shipped" figure).

Routing is judged on the test split (the newest 20%, `training.split.split_by_time`) as in
`bench_tiers`: "no slack" fits each threshold on the test labels themselves; "certified" runs the
product's `decision.tiers.certify_tiers` on the calibration split (the 20% before it) at confidence
1 - DELTA, with the default split of delta and with the split the planner chose most often on the
built-in data (block 0.25, severe 0.075, minor 0.675 of delta; bench/RESULTS_TIERS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import training.generate as gen  # noqa: E402
from bench.bench_tiers import (  # noqa: E402
    BLOCK_PRECISION,
    TIER_REASONS,
    TIERED_TARGETS,
    Scored,
    Thresholds,
    achieved,
    no_slack_thresholds,
    oracle_scored,
    route_scored,
)
from bench.common import log, run_meta  # noqa: E402
from decision.alpha_split import AlphaSplit  # noqa: E402
from decision.tiers import certify_tiers, risk_column, tier_labels  # noqa: E402
from features.config import MARKETPLACE_TIERS, load_config  # noqa: E402
from training.split import split_by_time  # noqa: E402

DELTA = 0.05
GRID_STEP = 0.1
GRID = np.round(np.arange(-1.6, 3.8 + GRID_STEP / 2, GRID_STEP), 10)  # 4 sd beyond either component
QUALITY_SD, OFFENDER_SHIFT = 0.4, 1.8  # the generator's q: N(0, 0.4^2), + 1.8 for repeat offenders
SCHEME_BOOST, CERTIFICATE_FACTOR = 7.0, 0.55  # offenders' scheme rate and certificate rate multipliers
IN_WINDOW = (0.2, 0.5)  # share of (ordinary, offender) merchants joining inside the window
AGE_DAYS = (700.0, 150.0)  # mean account age of those joining before it
SPLITS = {"default": AlphaSplit.default(2), "planned": AlphaSplit(0.25, (0.075, 0.675))}


def _component_density(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(prior density of q for an ordinary merchant, for an offender), each weighted by its share."""
    ordinary = (1 - gen.OFFENDER_SHARE) * np.exp(-0.5 * (grid / QUALITY_SD) ** 2)
    offender = gen.OFFENDER_SHARE * np.exp(-0.5 * ((grid - OFFENDER_SHIFT) / QUALITY_SD) ** 2)
    return ordinary, offender


def verdict_log_likelihood(w: gen.World, base: np.ndarray, detail: bool = True) -> np.ndarray:
    """(rows, grid) log P(label, reason, review_seconds | features, q) of every ordinary listing; with
    `detail` False, log P(label | features, q) alone (what counts of rejections can tell)."""
    r, o = w.rows, w.outcome
    nodes, weights = np.polynomial.hermite_e.hermegauss(2 * gen.LIMIT_NODES)
    weights = weights / np.sqrt(2 * np.pi)
    every: list[np.ndarray | slice] = [slice(None)] * len(gen.REASONS)
    rejected, reason = o.label == 1, np.maximum(o.reason - 1, 0)
    out = np.empty((len(base), len(GRID)))
    for j, q in enumerate(GRID):
        likelihood = np.zeros(len(base))
        for node, weight in zip(nodes, weights, strict=True):
            probs = gen._expit(base + q + gen.AMBIGUITY_SD * node)
            per_reason = np.stack(gen._label_risks(list(probs.T), every, len(base)), axis=1)
            p = 1.0 - np.prod(1.0 - probs, axis=1)
            if not detail:
                likelihood += weight * np.where(rejected, p, 1.0 - p)
                continue
            verdict = np.where(rejected, per_reason[np.arange(len(base)), reason], 1.0 - per_reason.sum(axis=1))
            likelihood += weight * verdict * gen._seconds_likelihood(w.seconds, r.category, p, o.label)
        out[:, j] = np.log(np.maximum(likelihood, 1e-300))
    return out


def offender_log_ratio(w: gen.World) -> np.ndarray:
    """Per ordinary listing, log P(its scheme, certificate | offender) / P(... | not): what its content
    says about its merchant's status."""
    r = w.rows
    rates = (
        np.stack(
            [
                gen._field("counterfeit_rate"),
                gen._field("prohibited_rate"),
                gen._field("claim_rate"),
                np.full(len(gen.CATEGORIES), gen._OFF_PLATFORM_RATE),
            ],
            axis=1,
        )[r.category]
        * (1.0 + 0.4 * r.drift)[:, None]
    )
    none = r.scheme == gen._NO_SCHEME
    scheme = np.where(none, np.log1p(-SCHEME_BOOST * rates.sum(1)) - np.log1p(-rates.sum(1)), np.log(SCHEME_BOOST))
    # certificates: the offender factor applies unless the listing is genuine luxury or a counterfeit
    rate = gen._field("certified")[r.category] * np.where(r.scheme == gen._CLAIM, 0.6, 1.0)
    counts = ~(r.genuine | (r.scheme == gen._COUNTERFEIT))
    held = r.certificate == 1
    certificate = np.where(
        held, np.log(CERTIFICATE_FACTOR), np.log1p(-CERTIFICATE_FACTOR * rate) - np.log1p(-np.minimum(rate, 1 - 1e-12))
    )
    return scheme + np.where(counts, certificate, 0.0)


def join_log_ratio(w: gen.World) -> np.ndarray:
    """Per merchant, log P(its join date | offender) / P(... | not)."""
    joined = w.merchants.joined
    inside = joined >= 0
    age = np.maximum(-joined, 0) / 86_400
    (p0, p1), (a0, a1) = IN_WINDOW, AGE_DAYS
    before = np.log((1 - p1) / (1 - p0)) + np.log(a0 / a1) - age / a1 + age / a0
    return np.where(inside, np.log(p1 / p0), before)


def posteriors(w: gen.World, verdicts: np.ndarray, content_evidence: bool = True) -> np.ndarray:
    """(rows, grid) posterior of q for every ordinary listing at its creation; without
    `content_evidence`, from the verdicts alone (no schemes, certificates or join date)."""
    r = w.rows
    reviewed = r.created + w.delay
    content = offender_log_ratio(w) if content_evidence else np.zeros(len(r.created))
    joining = join_log_ratio(w) if content_evidence else np.zeros(len(w.merchants.quality))
    ordinary, offender = _component_density(GRID)
    out = np.empty((len(r.created), len(GRID)))
    order = np.lexsort((r.created, r.merchant))
    merchant = r.merchant[order]
    bounds = np.flatnonzero(np.r_[True, merchant[1:] != merchant[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[lo:hi]  # this merchant's listings by creation time
        created = r.created[rows]
        by_review = rows[np.argsort(reviewed[rows], kind="stable")]
        seen = np.searchsorted(reviewed[by_review], created, side="left")  # reviewed strictly before
        verdict = np.vstack([np.zeros(len(GRID)), np.cumsum(verdicts[by_review], axis=0)])[seen]
        status = np.cumsum(content[rows]) + joining[merchant[lo]]  # content up to and including each
        mixture = np.log(ordinary[None, :] + offender[None, :] * np.exp(np.clip(status, -300, 300))[:, None])
        log_post = verdict + mixture
        post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
        out[rows] = post / post.sum(axis=1, keepdims=True)
    return out


def prior() -> np.ndarray:
    """The prior of q on GRID (weights summing to 1)."""
    ordinary, offender = _component_density(GRID)
    return (ordinary + offender) / (ordinary + offender).sum()


def tier_risks_on_grid(w: gen.World, base: np.ndarray) -> dict[str, np.ndarray]:
    """Per tier, (rows, grid) limit risk of every ordinary listing at each value of q."""
    at = gen._reason_rows(base)
    out = {tier: np.empty((len(base), len(GRID))) for tier in TIER_REASONS}
    for j, q in enumerate(GRID):
        per_reason = dict(zip(gen.REASONS, gen._limit_risks(base + q, at), strict=True))
        for tier, reasons in TIER_REASONS.items():
            out[tier][:, j] = np.sum([per_reason[k] for k in reasons], axis=0)
    return out


def frame_scored(w: gen.World, oracle: pd.DataFrame, tier_risk: dict[str, np.ndarray] | None) -> Scored:
    """Risks in the frame's row order: ordinary rows from `tier_risk` (None: the limit), re-posts the limit's."""
    ordinary = w.source < len(w.rows.created)
    out = {tier: risk.copy() for tier, risk in oracle_scored(oracle, "limit", tiered=True).tier_risk.items()}
    if tier_risk is not None:
        for tier, risk in out.items():
            risk[ordinary] = tier_risk[tier][w.source[ordinary]]
    return Scored(np.sum(list(out.values()), axis=0), out)


def certified_thresholds(
    scored: Scored, label: np.ndarray, tiers: np.ndarray, part: np.ndarray, split: AlphaSplit
) -> Thresholds:
    """The product's certificate (`certify_tiers`) on the rows `part` (the calibration split)."""
    reference = pd.DataFrame(
        {
            "risk": scored.risk[part],
            "label": label[part],
            "tier": tiers[part],
            **{risk_column(t): scored.tier_risk[t][part] for t in TIER_REASONS},
        }
    )
    choice = certify_tiers(reference, MARKETPLACE_TIERS, BLOCK_PRECISION, DELTA, split)
    return Thresholds(choice.t_pass, choice.t_block, choice.tier_pass)


def on_test(scored: Scored, rows: np.ndarray) -> Scored:
    return Scored(scored.risk[rows], {t: v[rows] for t, v in scored.tier_risk.items()})


def run_seed(rows: int, seed: int, ablation: bool = False) -> dict[str, Any]:
    started = time.time()
    w = gen.simulate(rows, seed)
    reviews, oracle = gen.frames(w)
    q = w.merchants.quality[w.rows.merchant]
    base = w.logits - (w.ambiguity + q)[:, None]  # every reason's logit at q = 0 and ambiguity 0
    grid_risk = tier_risks_on_grid(w, base)
    verdicts = verdict_log_likelihood(w, base)
    post = posteriors(w, verdicts)

    def ceiling(posterior: np.ndarray) -> Scored:
        return frame_scored(w, oracle, {t: (posterior * v).sum(axis=1) for t, v in grid_risk.items()})

    scorers = {
        "limit": frame_scored(w, oracle, None),
        "history_ceiling": ceiling(post),
        "features_only": frame_scored(w, oracle, {t: v @ prior() for t, v in grid_risk.items()}),
    }
    if ablation:  # which evidence the ceiling's lead over features_only comes from
        no_verdicts = np.zeros_like(verdicts)
        scorers["verdict_counts_only"] = ceiling(posteriors(w, verdict_log_likelihood(w, base, False), False))
        scorers["verdicts_only"] = ceiling(posteriors(w, verdicts, False))
        scorers["content_only"] = ceiling(posteriors(w, no_verdicts, True))
    config = load_config()
    split = split_by_time(reviews.assign(_row=np.arange(len(reviews))), config)
    test, calibration = split.test["_row"].to_numpy(), split.calibration["_row"].to_numpy()
    label = reviews["label"].to_numpy()
    tiers = tier_labels(label, reviews["violation_reason"].to_numpy(), config)
    truth = on_test(oracle_scored(oracle, "true", tiered=True), test)

    out: dict[str, Any] = {"seed": seed, "rows": rows, "test_rows": len(test), "calibration_rows": len(calibration)}
    for name, scored in scorers.items():
        tested = on_test(scored, test)
        routings = {"no_slack": no_slack_thresholds(tested, label[test], tiers[test], TIERED_TARGETS, BLOCK_PRECISION)}
        for split_name, alpha_split in SPLITS.items():
            routings[f"certified_{split_name}"] = certified_thresholds(scored, label, tiers, calibration, alpha_split)
        # as the product ships: certified on calibration + test (in-sample for the test rows judged)
        shipped_rows = np.r_[calibration, test]
        routings["shipped_planned"] = certified_thresholds(scored, label, tiers, shipped_rows, SPLITS["planned"])
        out[name] = {
            routing: achieved(
                route_scored(tested, th), label[test], tiers[test], TIERED_TARGETS, BLOCK_PRECISION, truth
            )
            for routing, th in routings.items()
        }
    limit = out["limit"]["no_slack"]["auto_decided_share"]
    for name in scorers:
        for figures in out[name].values():
            figures["ratio_to_limit"] = figures["auto_decided_share"] / limit if limit > 0 else None
    out["seconds"] = round(time.time() - started, 1)
    out["posterior_corr_with_q"] = float(np.corrcoef((post * GRID).sum(axis=1), q)[0, 1])
    out["violations_test"] = {t: int((tiers[test] == t).sum()) for t in TIERED_TARGETS}
    return out


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| seed | scorer | no slack | certified (default split) | certified (planned split) | shipped (cal + test) |",
        "|---|---|---|---|---|---|",
    ]
    for run in results:
        names = ("limit", "history_ceiling", "features_only", "verdict_counts_only", "verdicts_only", "content_only")
        for name in (n for n in names if n in run):
            cells = [
                f"{run[name][k]['auto_decided_share']:.1%} ({run[name][k]['ratio_to_limit']:.2f}x)"
                for k in ("no_slack", "certified_default", "certified_planned", "shipped_planned")
            ]
            lines.append(f"| {run['seed']} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also the ceiling from verdict counts alone, from verdicts alone and from content alone",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    results = []
    for seed in args.seeds:
        log(f"seed {seed}: {args.rows} rows")
        results.append(run_seed(args.rows, seed, args.ablation))
        log(markdown(results[-1:]))
    print(markdown(results))
    if args.out:
        meta = run_meta("bench/history_ceiling.py", start)
        args.out.write_text(json.dumps({"meta": meta, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
