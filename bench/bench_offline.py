"""Offline batch scoring: `score_file` (= `triage score`) against a plain pandas + LightGBM loop, and
`triage score --cluster local:N` on the same rows split into Parquet parts.

    python bench/bench_offline.py [--rows 1000000] [--rounds 3] [--cluster local:1,local:2] [--parts 8]

The baseline is what a data scientist would write with the same bundle: read the file, take it in
chunks, `builder.transform`, `Booster.predict` on the bundle's lightgbm.txt, calibrate, write the scores.
It skips what `score_file` also does (validating the data contract, routing every listing by policy), so
the comparison is conservative. Both write Parquet; each round runs both, in rotating order; medians.

With --cluster, every round also scores the same rows, written as --parts Parquet files, on a Dask
LocalCluster of each size: end to end (starting and closing the cluster included, as `triage score
--cluster local:N` does) and once the cluster is up (starting it is reported on its own). The table is
printed and appended to bench/RESULTS_OFFLINE.md as a dated section, with the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, alternate, ensure_data, log, median, prepare, run_meta  # noqa: E402

CHUNK_ROWS = 100_000
RESULTS_MD = ROOT / "bench" / "RESULTS_OFFLINE.md"


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


def dask_score(bundle_path: Path, parts: Path, out: Path, cluster: str) -> dict[str, Any]:
    """`triage score --cluster`: start the cluster, score, close it; the start timed on its own."""
    import shutil

    from training.cluster import cluster_client
    from training.dask_score import score_with_client

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    with cluster_client(cluster, trim_memory=False) as client:  # as `triage score --cluster` starts it
        started = time.perf_counter()
        client.wait_for_workers(int(cluster.split(":")[1]))
        summary = score_with_client(client, bundle_path, parts, out)
        scored = time.perf_counter()
    seconds = time.perf_counter() - start
    rows = summary["rows"]
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "running_rows_per_second": rows / (scored - started),
        "start_seconds": started - start,
    }


def split_into_parts(data: Path, parts: int) -> Path:
    """The rows of `data` as `parts` Parquet files (one row group each), next to it; cached."""
    directory = data.parent / f"parts-{parts}"
    if len(list(directory.glob("*.parquet"))) == parts:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    frame = pd.read_parquet(data)
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_parquet(directory / f"part-{k:03d}.parquet", index=False, row_group_size=len(rows))
    return directory


def run(
    bundle_path: Path, rows: int = 1_000_000, rounds: int = 3, clusters: list[str] | None = None, parts: int = 8
) -> list[dict[str, Any]]:
    data = ensure_data(rows)
    split = split_into_parts(data, parts) if clusters else None
    with tempfile.TemporaryDirectory() as tmp:
        ours_out, base_out = Path(tmp) / "ours.parquet", Path(tmp) / "baseline.parquet"
        cases: dict[str, Callable[[], dict[str, Any]]] = {
            "score_file": lambda: project_score_file(bundle_path, data, ours_out),
            "pandas_lightgbm": lambda: pandas_lightgbm_loop(bundle_path, data, base_out),
        }
        for cluster in clusters or []:
            assert split is not None
            cases[cluster] = partial(dask_score, bundle_path, split, Path(tmp) / cluster.replace(":", "-"), cluster)
        results = alternate(rounds, cases)
        ours, base = pd.read_parquet(ours_out), pd.read_parquet(base_out)
        agreement = float(np.max(np.abs(ours["risk"].to_numpy() - base["risk"].to_numpy())))
        for cluster in clusters or []:
            theirs = pd.read_parquet(Path(tmp) / cluster.replace(":", "-"))
            assert theirs["listing_id"].tolist() == ours["listing_id"].tolist(), cluster
            assert theirs["decision"].tolist() == ours["decision"].tolist(), cluster
            difference = float(np.max(np.abs(theirs["risk"].to_numpy() - ours["risk"].to_numpy())))
            log(f"{cluster}: same ids, order and decisions as score_file; max |risk difference| {difference:.1e}")
    for name, runs in results.items():
        log(f"offline {name}: " + ", ".join(f"{r['rows_per_second']:,.0f}" for r in runs) + " rows/s")
    command = f"python bench/bench_offline.py --rows {rows}"
    figures = [
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
    if clusters:
        write_table(results, rows, rounds, parts)
    return figures


def write_table(results: dict[str, list[dict[str, Any]]], rows: int, rounds: int, parts: int) -> None:
    single = median([r["rows_per_second"] for r in results["score_file"]])
    lines = [
        "| run | rows/s end to end | vs single process | rows/s once the cluster is up | cluster start |",
        "|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        end_to_end = median([r["rows_per_second"] for r in runs])
        if "running_rows_per_second" in runs[0]:
            running = f"{median([r['running_rows_per_second'] for r in runs]):,.0f}"
            start = f"{median([r['start_seconds'] for r in runs]):.1f} s"
        else:
            running, start = "", ""
        label = {"score_file": "single process (`score_file`)", "pandas_lightgbm": "baseline: pandas + LightGBM loop"}
        title = label.get(name, f"Dask `{name}` ({parts} Parquet parts)")
        lines.append(f"| {title} | {end_to_end:,.0f} | {end_to_end / single:.2f}x | {running} | {start} |")
    table = "\n".join(lines)
    print(table)
    meta = run_meta("bench/bench_offline.py", START)
    load = f"load average before {LOAD_BEFORE}, after {'/'.join(f'{v:.2f}' for v in os.getloadavg())}"
    section = (
        f"\n## Run of {meta['finished_at']}: one process and Dask\n\n"
        f"{rows:,} generated listings read, validated, scored, routed and written; medians of {rounds} rounds "
        "run in rotating order. The Dask runs read the same rows split into Parquet parts and write a directory "
        "of parts; each checked equal to `score_file` (ids, order, decisions; risks within float32 rounding).\n\n"
        f"`{meta['command']}`: {meta['machine']}, {load}.\n\n{table}\n"
    )
    # appended: the file is the history of these runs, with notes written between them
    earlier = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Offline scoring: one process and Dask\n"
    RESULTS_MD.write_text(earlier.rstrip("\n") + "\n" + section)
    log(f"wrote {RESULTS_MD}")


START = time.perf_counter()
LOAD_BEFORE = "/".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cluster", default="", help="Dask LocalCluster sizes to add, e.g. local:1,local:2")
    parser.add_argument("--parts", type=int, default=8, help="Parquet files the rows are split into for --cluster")
    args = parser.parse_args()
    clusters = [c.strip() for c in args.cluster.split(",") if c.strip()]
    figures = run(prepare().bundle, args.rows, args.rounds, clusters, args.parts)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
