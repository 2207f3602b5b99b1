"""Live rules: what shadow rules cost a decision, and how long rule analytics take on a large log.

    python bench/bench_rule_live.py [--rounds 5] [--shadow 10] [--log-rows 1000000]

Decisions: `DecisionEngine.decide` (rules, thresholds, audit draw, records; the model's scores computed
once beforehand) under the bundle's policy (baseline) and under the same policy plus `--shadow` shadow
term rules (matched in the same pass, logged, never acting), for 1 listing and a batch of 1,000.
Analytics: `decision.rule_stats.rule_stats` per day over a synthetic log of `--log-rows` decisions with
12 rules, beside the least work any such report does (counting hits per rule: explode + value_counts).
Each round times every case in rotating order; figures are medians over rounds (p99 over all calls).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import LISTING_COLUMNS, alternate, log, median, prepare, run_meta  # noqa: E402

COMMAND = "python bench/bench_rule_live.py"
SHADOW_TERMS = [["replica", "fake"], ["cbd oil"], ["miracle cure"], ["whatsapp"], ["1:1 copy"], ["knock off"]]


def _call_times(fn: Any, calls: int, max_seconds: float) -> list[float]:
    times = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if start > deadline:
            break
    return times


def decide_figures(bundle_path: Path, data: Path, rounds: int, n_shadow: int) -> list[dict[str, Any]]:
    from bundle.load import Bundle
    from decision.rules import Rule
    from serving.engine import DecisionEngine

    bundle = Bundle.load(bundle_path, threads=1)
    fields = ["title", "description"]
    shadow = [
        Rule(f"shadow_{i}", "review", "term", terms=SHADOW_TERMS[i % len(SHADOW_TERMS)], fields=fields, mode="shadow")
        for i in range(n_shadow)
    ]
    engines = {
        "baseline": DecisionEngine(bundle=bundle, policy=bundle.policy, seed=0),
        "shadow": DecisionEngine(bundle=bundle, policy=replace(bundle.policy, rules=[*bundle.policy.rules, *shadow])),
    }
    frame = pd.read_parquet(data, columns=LISTING_COLUMNS).iloc[-1000:]
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    batch = frame.to_dict("records")
    one = batch[:1]
    scores_one, scores_batch = engines["baseline"].score(one), engines["baseline"].score(batch)
    cases = {}
    for name, engine in engines.items():
        cases[f"{name}_1"] = lambda e=engine: _call_times(lambda: e.decide(one, scores_one), 2000, 2.0)
        cases[f"{name}_1000"] = lambda e=engine: _call_times(lambda: e.decide(batch, scores_batch), 30, 3.0)
    for fn in cases.values():
        fn()  # warm-up
    rounds_of = alternate(rounds, cases)  # per case, one list of call times per round
    medians = {name: median([median(run) for run in runs]) for name, runs in rounds_of.items()}
    p99 = {name: float(np.percentile([t for run in runs for t in run], 99)) for name, runs in rounds_of.items()}
    hits = sum(bool(r.rules_shadow) for r in engines["shadow"].decide(batch, scores_batch))
    note = f"{n_shadow} shadow term rules on title+description; {hits} of 1,000 listings hit one"
    figures = []
    for size, label in (("1", "1 listing"), ("1000", "batch of 1,000")):
        figures.append(
            {
                "group": "live rules",
                "figure": f"decide, {label}: median",
                "unit": "µs",
                "ours": medians[f"shadow_{size}"] * 1e6,
                "baseline": medians[f"baseline_{size}"] * 1e6,
                "baseline_name": "the bundle's policy without shadow rules",
                "higher_is_better": False,
                "command": COMMAND,
                "note": note,
            }
        )
        figures.append(
            {
                "group": "live rules",
                "figure": f"decide, {label}: p99",
                "unit": "µs",
                "ours": p99[f"shadow_{size}"] * 1e6,
                "baseline": p99[f"baseline_{size}"] * 1e6,
                "baseline_name": "the bundle's policy without shadow rules",
                "higher_is_better": False,
                "command": COMMAND,
            }
        )
    return figures


def synthetic_log(rows: int, seed: int = 0) -> pd.DataFrame:
    """A decision log of `rows` decisions over 30 days: 8 enforced and 4 shadow rules, each hitting 0.5-5 %."""
    rng = np.random.default_rng(seed)
    names = [f"rule_{i}" for i in range(12)]
    rates = np.linspace(0.005, 0.05, 12)
    hit = rng.random((rows, 12)) < rates
    enforce = [[names[j] for j in np.flatnonzero(row[:8])] for row in hit]
    shadow = [[names[8 + j] for j in np.flatnonzero(row[8:])] for row in hit]
    model = rng.choice(["auto_pass", "human_review", "auto_block"], size=rows, p=[0.8, 0.17, 0.03])
    reviewed = (model == "human_review") | (rng.random(rows) < 0.02)
    return pd.DataFrame(
        {
            "decision_id": np.arange(rows).astype(str),
            "decided_at": pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(rng.random(rows) * 30, unit="D"),
            "decision": model,
            "model_decision": model,
            "rules_matched": enforce,
            "rules_shadow": shadow,
            "inclusion_prob": np.where(model == "human_review", 1.0, 0.02),
            "verdict": pd.Series(np.where(rng.random(rows) < 0.3, "reject", "approve")).where(reviewed),
            "review_seconds": rng.gamma(2.0, 40.0, rows),
        }
    )


def stats_figures(rows: int, rounds: int) -> list[dict[str, Any]]:
    from decision.rule_stats import rule_stats

    frame = synthetic_log(rows)
    actions = {f"rule_{i}": "review" if i % 2 else "block" for i in range(12)}

    def hit_counts() -> None:
        pd.concat([frame["rules_matched"].explode(), frame["rules_shadow"].explode()]).value_counts()

    cases = {
        "stats": lambda: _timed(lambda: rule_stats(frame, "day", 0.95, actions)),
        "counts": lambda: _timed(hit_counts),
    }
    result = {name: median(values) for name, values in alternate(rounds, cases).items()}
    return [
        {
            "group": "live rules",
            "figure": f"rule analytics per day over {rows:,} decisions",
            "unit": "s",
            "ours": result["stats"],
            "baseline": result["counts"],
            "baseline_name": "counting hits per rule only (explode + value_counts)",
            "higher_is_better": False,
            "command": COMMAND,
            "note": "12 rules (8 enforce, 4 shadow), 30 days; from the loaded frame (the store read is not timed)",
        }
    ]


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shadow", type=int, default=10)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=200_000, help="rows of the bench model (cached)")
    args = parser.parse_args()
    start = time.perf_counter()
    prepared = prepare(args.train_rows)
    figures = decide_figures(prepared.bundle, prepared.data, args.rounds, args.shadow)
    log("decisions timed; timing rule analytics")
    figures += stats_figures(args.log_rows, max(1, args.rounds // 2))
    print(json.dumps({"run": run_meta("bench/bench_rule_live.py", start), "figures": figures}, indent=2))


if __name__ == "__main__":
    main()
