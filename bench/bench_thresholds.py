"""Benchmark threshold choice and simulation on a synthetic reference set.

    .venv/bin/python bench/bench_thresholds.py [--rows 1000000] [--segments 20] [--repeat 3]

Targets (from the issue): thresholds on 1M rows < 2 s; segment_by with 20 segments < 10 s;
simulate on 1M rows < 200 ms. Prints the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from decision.simulate import simulate, sweep  # noqa: E402
from decision.thresholds import ThresholdResult, choose_policy_thresholds  # noqa: E402


def reference(rows: int, segments: int, seed: int = 0) -> pd.DataFrame:
    """Calibrated overall, miscalibrated within segments (true rate = risk x a segment factor)."""
    rng = np.random.default_rng(seed)
    segment = rng.integers(0, segments, rows)
    factor = np.linspace(0.4, 1.8, segments)[segment]
    risk = np.where(rng.random(rows) < 0.9, rng.beta(0.5, 6, rows), rng.beta(6, 0.3, rows))
    label = (rng.random(rows) < np.clip(risk * factor, 0, 1)).astype(np.int64)
    return pd.DataFrame(
        {
            "risk": risk,
            "label": label,
            "review_seconds": rng.gamma(2.0, 30.0, rows),
            "category": np.char.add("cat", segment.astype(str)),
            "market": "de",
        }
    )


def best_of(repeat: int, fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    frame = reference(args.rows, args.segments)
    cases = [
        ("thresholds (guarantee)", 2.0, lambda: choose_policy_thresholds(frame)),
        (
            "thresholds (capacity)",
            2.0,
            lambda: choose_policy_thresholds(frame, capacity_hours=800, daily_volume=100_000),
        ),
        (
            f"thresholds (segment_by, {args.segments} segments)",
            10.0,
            lambda: choose_policy_thresholds(frame, segment_by="category"),
        ),
        ("simulate", 0.2, lambda: simulate(frame, 0.01, 0.99, 100_000)),
        (
            "simulate + breakdown by category",
            None,
            lambda: simulate(frame, 0.01, 0.99, 100_000, breakdown_by="category"),
        ),
        ("sweep (400 points)", None, lambda: sweep(frame, t_block=0.99)),
    ]
    table = Table(title=f"{args.rows:,} reference rows, best of {args.repeat}")
    for column in ("case", "seconds", "target", "result"):
        table.add_column(column)
    for name, target, fn in cases:
        seconds, out = best_of(args.repeat, fn)
        verdict = "" if target is None else ("ok" if seconds < target else "SLOW")
        detail = f"{out.mode}: {out.message[:60]}" if isinstance(out, ThresholdResult) else ""
        table.add_row(name, f"{seconds:.3f}", "" if target is None else f"< {target:g} s {verdict}", detail)
    Console().print(table)


if __name__ == "__main__":
    main()
