"""Offline batch scoring: `score_file` (= `triage score`) against a plain pandas + LightGBM loop.

    python bench/bench_offline.py [--rows 1000000] [--rounds 3]

The baseline is what a data scientist would write with the same bundle: read the file, take it in
chunks, `builder.transform`, `Booster.predict` on the bundle's lightgbm.txt, calibrate, write the scores.
It skips what `score_file` also does (validating the data contract, routing every listing by policy), so
the comparison is conservative. Both write Parquet; each round runs both, in rotating order; medians.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import alternate, ensure_data, log, median, prepare  # noqa: E402

CHUNK_ROWS = 100_000


def pandas_lightgbm_loop(bundle_path: Path, data: Path, out: Path) -> dict[str, Any]:
    """The baseline: chunks of a DataFrame -> builder.transform -> booster.predict -> calibrate."""
    import lightgbm as lgb
    import yaml

    from bundle.manifest import resolve_bundle
    from features.builder import FeatureBuilder
    from features.calibration import Calibrator
    from features.config import DataConfig

    start = time.perf_counter()
    bundle_dir = resolve_bundle(bundle_path)
    config = DataConfig.from_dict(yaml.safe_load((bundle_dir / "data_config.yaml").read_text()))
    builder = FeatureBuilder.load(bundle_dir / "feature_state", config)
    calibrator = Calibrator.load(bundle_dir / "calibrator.json")
    booster = lgb.Booster(model_file=str(bundle_dir / "lightgbm.txt"))
    frame = pd.read_parquet(data)
    parts = []
    for lo in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[lo : lo + CHUNK_ROWS]
        X = builder.transform(chunk)
        risk = calibrator(booster.predict(X))
        parts.append(pd.DataFrame({"listing_id": chunk["listing_id"].to_numpy(), "risk": risk}))
    pd.concat(parts, ignore_index=True).to_parquet(out, index=False)
    seconds = time.perf_counter() - start
    return {"rows": len(frame), "seconds": seconds, "rows_per_second": len(frame) / seconds}


def project_score_file(bundle_path: Path, data: Path, out: Path) -> dict[str, Any]:
    from training.offline import score_file

    start = time.perf_counter()
    summary = score_file(bundle_path, data, out)
    seconds = time.perf_counter() - start
    return {"rows": summary["rows"], "seconds": seconds, "rows_per_second": summary["rows"] / seconds}


def run(bundle_path: Path, rows: int = 1_000_000, rounds: int = 3) -> list[dict[str, Any]]:
    data = ensure_data(rows)
    with tempfile.TemporaryDirectory() as tmp:
        ours_out, base_out = Path(tmp) / "ours.parquet", Path(tmp) / "baseline.parquet"
        cases = {
            "score_file": lambda: project_score_file(bundle_path, data, ours_out),
            "pandas_lightgbm": lambda: pandas_lightgbm_loop(bundle_path, data, base_out),
        }
        results = alternate(rounds, cases)
        ours, base = pd.read_parquet(ours_out), pd.read_parquet(base_out)
        agreement = float(np.max(np.abs(ours["risk"].to_numpy() - base["risk"].to_numpy())))
    for name, runs in results.items():
        log(f"offline {name}: " + ", ".join(f"{r['rows_per_second']:,.0f}" for r in runs) + " rows/s")
    command = f"python bench/bench_offline.py --rows {rows}"
    return [
        {
            "group": "offline batch scoring",
            "figure": f"{rows:,} rows, end to end (read, score, write)",
            "unit": "rows/s",
            "ours": median([r["rows_per_second"] for r in results["score_file"]]),
            "baseline": median([r["rows_per_second"] for r in results["pandas_lightgbm"]]),
            "baseline_name": "pandas chunks + builder.transform + Booster.predict",
            "higher_is_better": True,
            "command": command,
            "target": ">= 100,000 rows/s",
            "note": f"score_file also validates and routes; max |risk difference| {agreement:.1e}",
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures = run(prepare().bundle, args.rows, args.rounds)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
