"""Benchmark: training in one process vs on a Dask LocalCluster (`triage train --cluster local:N`).

Usage:
    python bench/bench_dask_train.py --rows 1000000             # one process vs local:2, same data
    python bench/bench_dask_train.py --rows 10000000 --dask-only # the large run: Dask only

The generated data (`training.generate`, seed 0) is written once to bench/out/dask_train_<rows>/ as
reviews.parquet (what one process reads) and parts/ (the same rows as Parquet parts, what the cluster
reads). Each training run is a fresh process; while it runs, this script polls /proc for it and every
process it started (the Dask worker processes) and keeps each one's peak resident memory (VmHWM).
Reports wall time, the peak of the training process (the client, for Dask) and of each worker, and
test ROC-AUC; writes bench/out/dask_train_<rows>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

CHILD = r"""
import json, logging, sys, time
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
for noisy in ("distributed", "lightgbm", "numba", "optuna"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
from pathlib import Path
from training.pipeline import TrainOptions, train
data, out, cluster = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] or None
t0 = time.perf_counter()
result = train(TrainOptions(data=data, out=out, show_progress=False, log_mlflow=False, cluster=cluster))
print(json.dumps({"train_s": time.perf_counter() - t0, "test_roc_auc": result.metrics["test"].get("roc_auc"),
                  "best_iteration": result.metrics["best_iteration"], "model": result.metrics["model"]["name"],
                  "split_sizes": result.metrics["split_sizes"], "warnings": result.metrics["warnings"]}))
"""
POLL_S = 0.2


def write_data(rows: int, parts: int, single_file: bool) -> Path:
    """reviews.parquet (when `single_file`) and parts/part-NNN.parquet (the same rows, in order) under
    bench/out/; kept for the next run."""
    from training.generate import generate

    root = Path("bench/out") / f"dask_train_{rows}"
    if (root / "parts").is_dir() and (not single_file or (root / "reviews.parquet").is_file()):
        return root
    root.mkdir(parents=True, exist_ok=True)
    reviews, _ = generate(rows, seed=0)
    if single_file:
        reviews.to_parquet(root / "reviews.parquet", index=False)
    (root / "parts").mkdir(exist_ok=True)
    step = -(-len(reviews) // parts)
    for k in range(parts):
        reviews.iloc[k * step : (k + 1) * step].to_parquet(root / "parts" / f"part-{k:03d}.parquet", index=False)
    return root


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(parent, []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _peak_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run(data: Path, cluster: str | None, out: Path) -> dict:
    """One training run in a fresh process; peak memory of it and of each process it started."""
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    log_path = out.parent / f"train_{cluster or 'process'}.log"  # the stages' times, as they end
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data), str(out), cluster or ""],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    peaks: dict[int, int] = {}
    while proc.poll() is None:
        for pid in [proc.pid, *_descendants(proc.pid)]:
            kb = _peak_kb(pid)
            if kb is not None:
                peaks[pid] = max(peaks.get(pid, 0), kb)
        time.sleep(POLL_S)
    stdout, _ = proc.communicate()
    stderr = log_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({cluster or 'one process'}):\n{stderr[-4000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["stages_s"] = {
        line.split(": ", 1)[1]: float(line.split("stage done in ")[1].split(" s")[0])
        for line in stderr.splitlines()
        if "stage done in" in line
    }
    gb = 1024**2
    workers = sorted((kb / gb for pid, kb in peaks.items() if pid != proc.pid and kb > 200 * 1024), reverse=True)
    return {
        "cluster": cluster,
        **result,
        "peak_gb": peaks.get(proc.pid, 0) / gb,
        "worker_peaks_gb": workers,
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parts", type=int, default=0, help="Parquet parts (default: one per 250k rows, >= 8)")
    parser.add_argument("--dask-only", action="store_true", help="skip the one-process run (10M rows)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    root = write_data(args.rows, args.parts or max(8, args.rows // 250_000), not args.dask_only)
    runs = []
    for _ in range(args.repeats):  # alternating, so both see the same machine load
        if not args.dask_only:
            runs.append(run(root / "reviews.parquet", None, root / "models"))
            print(json.dumps(runs[-1]), flush=True)
        runs.append(run(root / "parts", f"local:{args.workers}", root / "models"))
        print(json.dumps(runs[-1]), flush=True)
    table = pd.DataFrame(
        [
            {
                "run": r["cluster"] or "one process",
                "train s": round(r["train_s"], 1),
                "peak GB (process/client)": round(r["peak_gb"], 2),
                "peak GB per worker": ", ".join(f"{g:.2f}" for g in r["worker_peaks_gb"]) or "-",
                "test ROC-AUC": round(r["test_roc_auc"], 4),
                "rounds": r["best_iteration"],
            }
            for r in runs
        ]
    )
    print(table.to_string(index=False))
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    (Path("bench/out") / f"dask_train_{args.rows}.json").write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
