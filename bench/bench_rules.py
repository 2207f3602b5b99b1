"""Benchmark rule backtests on 1M scored rows, beside two baselines in the same run, and the workload the
shipped marketplace rules add at certified thresholds.

    .venv/bin/python bench/bench_rules.py [--rows 1000000] [--sample 20000] [--repeat 3]

Rows: the generator's listings (real text, categories, markets, handling times) scored with the oracle's
`limit_risk` (the best any model could reach from the features: calibrated, a stand-in for a bundle's
risk), thresholds certified on them (`choose_policy_thresholds`, recall 0.99, block precision 0.98 at 95%),
the shipped rules (`default_rules`). Timed (best of --repeat): `backtest` of a candidate block rule with
two segment columns; baseline 1, the routing-only pass (`route` with rule masks already matched: the
floor of any backtest); baseline 2, a naive per-row Python loop (match each rule on each listing, route it
alone) on a --sample rows, scaled to --rows. Category rules: the mask of one category rule over the whole
column as matched (`_category_mask`: distinct values found by arrow's dictionary encoding) beside the
earlier way (sorting every value with `np.unique`), with equal answers checked. Peak memory:
tracemalloc's peak of the backtest (Python and numpy allocations; Arrow's own buffers are not traced)
and the process's peak RSS. The generated rows carry no `product_match`, so the shipped match rules
match nothing here.
Target (issue 14): a backtest over 1M rows in under 5 s. Writes bench/RESULTS_RULES.md.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, log, run_meta  # noqa: E402
from decision.backtest import backtest, certify_shipped_rules  # noqa: E402
from decision.policy import Policy, route  # noqa: E402
from decision.rules import Rule, _category_mask, _normalized_values, match_rules, match_rules_on_texts  # noqa: E402
from decision.thresholds import choose_policy_thresholds, default_rules  # noqa: E402
from features.config import load_config  # noqa: E402
from features.lexicon import normalize_category  # noqa: E402
from training.generate import generate  # noqa: E402

CANDIDATE = Rule(
    "wildlife_and_weapons",
    "block",
    "term",
    terms=["rhino horn", "tiger skin", "butterfly knife", "stun gun", "gps jammer", "ivory"],
    fields=["title", "description", "brand"],
)
SEGMENTS = ["market", "category"]


def scored_history(rows: int, seed: int) -> pd.DataFrame:
    reviews, oracle = generate(rows, seed=seed)
    history = reviews.assign(risk=oracle["limit_risk"].to_numpy())
    return history


def best_of(repeat: int, fn: Any) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def routing_only(history: pd.DataFrame, policy: Policy, rule_block: np.ndarray, rule_review: np.ndarray) -> Any:
    risk = history["risk"].to_numpy()
    return route(risk, policy.t_pass, policy.t_block, rule_block, rule_review), route(
        risk, policy.t_pass, policy.t_block, rule_block, rule_review
    )


def naive_loop(sample: pd.DataFrame, policy: Policy, candidate: Rule) -> dict[str, int]:
    """One listing at a time, as the service decides one listing: every rule's precompiled pattern on its
    texts (`match_rules_on_texts`), then `route` for that listing, before and after."""
    counts = {"before": np.zeros(3, dtype=np.int64), "after": np.zeros(3, dtype=np.int64)}
    columns = sorted({c for r in [*policy.rules, candidate] for c in r.columns if c in sample})
    texts = sample[columns].astype("string").fillna("")
    for row, risk in zip(texts.to_dict("records"), sample["risk"].tolist(), strict=True):
        one = {c: [row[c]] for c in columns}
        for when, rules in (("before", policy.rules), ("after", [*policy.rules, candidate])):
            block, review, _ = match_rules_on_texts(one, 1, rules)
            code = route(np.array([risk]), policy.t_pass, policy.t_block, block, review)[0]
            counts[when][code] += 1
    return {k: int(v.sum()) for k, v in counts.items()}


def category_mask_by_sorting(values: pa.Array, wanted: frozenset[str]) -> np.ndarray:
    """The earlier category mask: every value sorted (`np.unique`) to find the distinct ones."""
    uniques, inverse = np.unique(np.asarray(values.to_numpy(zero_copy_only=False), dtype=str), return_inverse=True)
    hit = np.fromiter((normalize_category(u) in wanted for u in uniques), dtype=bool, count=len(uniques))
    return hit[inverse.reshape(-1)]


def time_category_masks(history: pd.DataFrame, repeat: int) -> tuple[float, float]:
    """(seconds of the category mask as matched, of the sorting baseline) on the category column."""
    column = pa.array(history["category"].astype("string").fillna(""), type=pa.large_string())
    wanted = _normalized_values(("Health & Supplements", "Toys"))
    t_mask, mask = best_of(repeat, lambda: _category_mask(column, wanted))
    t_sorting, by_sorting = best_of(repeat, lambda: category_mask_by_sorting(column, wanted))
    if not np.array_equal(mask, by_sorting):
        raise SystemExit("category masks differ from the sorting baseline")
    return t_mask, t_sorting


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_RULES.md")
    args = parser.parse_args()
    start = time.perf_counter()
    log(f"generating {args.rows:,} scored rows")
    history = scored_history(args.rows, args.seed)
    config = load_config(None)
    chosen = choose_policy_thresholds(history, recall=0.99, block_precision=0.98, delta=0.05)
    policy = chosen.to_policy(rules=default_rules(config))
    log(f"policy: {chosen.message}")

    log("backtest (vectorised)")
    tracemalloc.start()
    backtest(history, policy, CANDIDATE, segment_by=SEGMENTS)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t_backtest, result = best_of(args.repeat, lambda: backtest(history, policy, CANDIDATE, segment_by=SEGMENTS))
    t_plain, _ = best_of(args.repeat, lambda: backtest(history, policy, CANDIDATE))

    log("baseline: routing only")
    block, review, _ = match_rules(history, [*policy.rules, CANDIDATE])
    t_route, _ = best_of(args.repeat, lambda: routing_only(history, policy, block, review))

    log(f"baseline: naive per-row loop on {args.sample:,} rows")
    sample = history.sample(args.sample, random_state=args.seed)
    t_loop, _ = best_of(1, lambda: naive_loop(sample, policy, CANDIDATE))
    t_loop_scaled = t_loop * len(history) / len(sample)

    log("category masks: dictionary encoding vs sorting")
    t_category, t_category_sorting = time_category_masks(history, args.repeat)

    log("shipped rules at the certified thresholds")
    _, report = certify_shipped_rules(history, policy)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    meta = run_meta("bench/bench_rules.py", start)
    times = (t_backtest, t_plain, t_route, t_loop, t_loop_scaled, t_category, t_category_sorting)
    text = render(args, meta, chosen.message, result, report, *times)
    text += f"\nPeak memory: tracemalloc peak of one backtest {traced_peak / 1024**2:,.0f} MB; "
    text += f"process peak RSS {peak_rss_gb:.2f} GB (includes generating the rows).\n"
    args.out.write_text(text)
    print(text)


def render(
    args: argparse.Namespace,
    meta: dict[str, Any],
    policy_message: str,
    result: dict[str, Any],
    report: dict[str, Any],
    t_backtest: float,
    t_plain: float,
    t_route: float,
    t_loop: float,
    t_loop_scaled: float,
    t_category: float,
    t_category_sorting: float,
) -> str:
    rows = result["rows"]
    before, after = result["before"], result["after"]
    lines = [
        f"# Rule backtests: {rows:,} rows",
        "",
        f"Command: `{meta['command']}` ({meta['machine']}; finished {meta['finished_at']}, {meta['seconds']} s).",
        "",
        f"{rows:,} generated listings scored with the oracle's `limit_risk`; policy certified on them: "
        f"{policy_message}",
        "",
        "| case | seconds | target |",
        "|---|---:|---:|",
        f"| backtest: candidate block rule, per market and category | {t_backtest:.2f} | < 5 |",
        f"| backtest: candidate block rule, no segments | {t_plain:.2f} | |",
        f"| baseline: routing only, before + after (rules already matched) | {t_route:.3f} | |",
        f"| baseline: naive per-row loop, {args.sample:,} rows measured ({t_loop:.1f} s), scaled to {rows:,} "
        f"| {t_loop_scaled:,.0f} | |",
        f"| category rule mask over the whole column (distinct values by dictionary encoding) | {t_category:.3f} | |",
        f"| baseline: the same mask by sorting every value (`np.unique`), equal answers | {t_category_sorting:.3f} | |",
        "",
        f"Best of {args.repeat} runs (the loop: one run). Candidate: `{CANDIDATE.name}` "
        f"({', '.join(CANDIDATE.terms)} in title/description/brand) as a block rule.",
        "",
        "Its backtest: "
        f"{result['rule']['hits']:,} hits, precision {result['rule']['precision']['value']:.4f} "
        f"[{result['rule']['precision']['lower']:.4f}, {result['rule']['precision']['upper']:.4f}], "
        f"certified to auto-block at 0.98: {result['certificate']['certified']} "
        f"(lower bound {result['certificate']['lower']:.4f}); human review "
        f"{before['shares']['human_review']:.2%} -> {after['shares']['human_review']:.2%}, reviewer-hours "
        f"{before['reviewer_hours']:,.0f} -> {after['reviewer_hours']:,.0f}, wrongful blocks "
        f"{before['wrongful_blocks']:,} -> {after['wrongful_blocks']:,}.",
        "",
        "## Workload of the shipped rules at the certified thresholds",
        "",
        "Each rule's share of the rows it adds to human review or auto-block, and reviewer-hours, against the "
        "same policy without it (recall held by the certified t_pass; a rule adds queue, and catches the "
        "violations below t_pass it hits).",
        "",
        "| rule | action | hits | precision (lower bound) | queue share added | reviewer-hours added "
        "| violations caught below t_pass |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for rule in report["rules"]:
        cert, adds = rule["certificate"], rule["adds"]
        lines.append(
            f"| {rule['name']} | {rule['action_shipped']} | {cert['hits']:,} | {_num(cert['precision'])} "
            f"({_num(cert['lower'])}) | {adds['queue_share']:+.3%} | {adds['reviewer_hours']:+,.1f} | "
            f"{adds['violations_caught']:,} |"
        )
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
