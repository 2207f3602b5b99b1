"""Benchmark: wall time and peak memory of generate + train at several sizes, each in a fresh process.

Usage: python bench/bench_train.py --rows 100000 300000 1000000
Writes bench/out/train.json and prints a table; the growth column compares each size's training time
with an n log n extrapolation from the smallest size.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from training.generate import write_dataset
from training.pipeline import TrainOptions, train
rows, out = int(sys.argv[1]), Path(sys.argv[2])
t0 = time.perf_counter()
write_dataset(out / "data", rows=rows, seed=0)
t1 = time.perf_counter()
result = train(TrainOptions(data=out / "data" / "reviews.parquet", out=out / "models", show_progress=False,
                            log_mlflow=False))
t2 = time.perf_counter()
print(json.dumps({"rows": rows, "generate_s": t1 - t0, "train_s": t2 - t1, "total_s": t2 - t0,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                  "test_roc_auc": result.metrics["test"].get("roc_auc")}))
"""


def run(rows: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(rows), tmp], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    args = parser.parse_args()
    results = [run(n) for n in args.rows]
    base = results[0]
    print(
        f"{'rows':>10} {'generate s':>11} {'train s':>9} {'total s':>9} {'peak GB':>8} {'n log n pred s':>15}"
        f" {'ROC-AUC':>8}"
    )
    for r in results:
        scale = (r["rows"] * math.log(r["rows"])) / (base["rows"] * math.log(base["rows"]))
        r["nlogn_predicted_total_s"] = base["total_s"] * scale
        print(
            f"{r['rows']:>10,} {r['generate_s']:>11.1f} {r['train_s']:>9.1f} {r['total_s']:>9.1f} "
            f"{r['peak_rss_gb']:>8.2f} {r['nlogn_predicted_total_s']:>15.1f} {r['test_roc_auc']:>8.4f}"
        )
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
