"""Inference core: the bundle's ONNX Runtime path against LightGBM's native `Booster.predict`.

    python bench/bench_inference.py [--rounds 5]

Same feature matrix, same model (the bundle's lightgbm.txt is what model.onnx was converted from).
1 row: both on one thread (what a single-listing request uses). 10,000 rows: both on every core.
Each round times every case in rotating order; the figures are medians over rounds.
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

from bench.common import LISTING_COLUMNS, alternate, log, median, prepare  # noqa: E402

COMMAND = "python bench/bench_inference.py"


def _per_call_seconds(fn, calls: int, max_seconds: float) -> float:
    """Median wall time of one call over up to `calls` calls (bounded by max_seconds)."""
    times = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if start > deadline:
            break
    return float(np.median(times))


def run(bundle_path: Path, data: Path, rounds: int = 5) -> list[dict[str, Any]]:
    import lightgbm as lgb

    from bundle.load import Bundle

    one_thread = Bundle.load(bundle_path, threads=1)
    all_threads = Bundle.load(bundle_path, threads=0)
    booster = lgb.Booster(model_file=str(one_thread.path / "lightgbm.txt"))
    listings = pd.read_parquet(data, columns=LISTING_COLUMNS).iloc[-10_000:].reset_index(drop=True)
    X = one_thread.features(listings)
    x1 = X[:1].copy()
    parity = float(np.max(np.abs(one_thread.raw_scores(X) - booster.predict(X))))
    log(f"inference core: ONNX vs LightGBM max |difference| on 10,000 rows = {parity:.2e}")
    cases = {
        "onnx_1": lambda: _per_call_seconds(lambda: one_thread.raw_scores(x1), 3000, 3.0),
        "lgbm_1": lambda: _per_call_seconds(lambda: booster.predict(x1, num_threads=1), 3000, 3.0),
        "onnx_10k": lambda: _per_call_seconds(lambda: all_threads.raw_scores(X), 30, 3.0),
        "lgbm_10k": lambda: _per_call_seconds(lambda: booster.predict(X), 30, 3.0),
    }
    for fn in cases.values():  # warm-up: first calls allocate and spin up thread pools
        fn()
    result = {name: median(times) for name, times in alternate(rounds, cases).items()}
    return [
        {
            "group": "inference core",
            "figure": "1 row, latency (1 thread)",
            "unit": "µs",
            "ours": result["onnx_1"] * 1e6,
            "baseline": result["lgbm_1"] * 1e6,
            "baseline_name": "LightGBM Booster.predict",
            "higher_is_better": False,
            "command": COMMAND,
        },
        {
            "group": "inference core",
            "figure": "10,000 rows, throughput (all cores)",
            "unit": "rows/s",
            "ours": 10_000 / result["onnx_10k"],
            "baseline": 10_000 / result["lgbm_10k"],
            "baseline_name": "LightGBM Booster.predict",
            "higher_is_better": True,
            "command": COMMAND,
            "note": f"max |ONNX - LightGBM| probability difference {parity:.1e}",
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    prepared = prepare()
    figures = run(prepared.bundle, prepared.data, args.rounds)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
