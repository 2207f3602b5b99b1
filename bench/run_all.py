"""Every benchmark in one run: `make bench` -> bench/results.md (table) and bench/results.json.

    python bench/run_all.py [--quick] [--only serving,inference,offline,training]

First trains the bench's own model on 200k generated rows (cached in bench/out/prepared-200000), then:
- serving: this service vs `mlflow models serve` of the same model (with and without a signature), and a
  FastAPI echo as the ceiling for Python HTTP (bench/bench_serving.py);
- inference core: ONNX Runtime bundle path vs LightGBM native predict (bench/bench_inference.py);
- offline batch scoring: `score_file` vs a pandas + LightGBM loop on 1M rows (bench/bench_offline.py);
- training at 100k / 300k / 1M rows (bench/bench_train.py; --quick skips 1M).
Each comparison alternates A and B over several rounds in one run and reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_inference, bench_offline, bench_serving  # noqa: E402
from bench.common import OUT, PYTHON, ROOT, log, prepare  # noqa: E402

RESULTS_MD = ROOT / "bench" / "results.md"
RESULTS_JSON = ROOT / "bench" / "results.json"
GROUPS = ("serving", "inference", "offline", "training")


def training_figures(quick: bool) -> list[dict[str, Any]]:
    rows = [100_000, 300_000] if quick else [100_000, 300_000, 1_000_000]
    command = "python bench/bench_train.py --rows " + " ".join(str(r) for r in rows)
    subprocess.run([PYTHON, str(ROOT / "bench" / "bench_train.py"), "--rows", *map(str, rows)], check=True, cwd=ROOT)
    results = json.loads((OUT / "train.json").read_text())
    figures = []
    for r in results:
        figures.append(
            {
                "group": "training",
                "figure": f"generate + train {r['rows']:,} rows: wall time",
                "unit": "s",
                "ours": r["total_s"],
                "baseline": r["nlogn_predicted_total_s"],
                "baseline_name": "n log n extrapolation from 100k",
                "higher_is_better": False,
                "command": command,
                "note": f"train {r['train_s']:.0f} s, peak RSS {r['peak_rss_gb']:.2f} GB, test ROC-AUC "
                f"{r['test_roc_auc']:.4f}",
            }
        )
    return figures


def ratio(figure: dict[str, Any]) -> float | None:
    """How many times better this project is than the baseline (> 1: better)."""
    ours, base = figure.get("ours"), figure.get("baseline")
    if not ours or not base:
        return None
    return ours / base if figure["higher_is_better"] else base / ours


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("ms", "µs", "s"):
        return f"{value:,.2f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{value:,.0f} {unit}"


def goals(figures: list[dict[str, Any]]) -> list[str]:
    """The issue's goals, each met or not, from the measured figures."""

    def find(group: str, text: str) -> dict[str, Any] | None:
        return next((f for f in figures if f["group"] == group and text in f["figure"]), None)

    lines = []
    for scenario in (
        "1 listing/request, concurrency 1",
        "1 listing/request, concurrency 32",
        "batch of 1,000 listings/request",
    ):
        tput = find("serving vs MLflow", f"{scenario}: throughput")
        p99 = find("serving vs MLflow", f"{scenario}: p99")
        if tput and p99:
            ok = (ratio(tput) or 0) >= 3 and p99["ours"] < p99["baseline"]
            lines.append(
                f"- {'MET' if ok else 'NOT MET'}: >= 3x MLflow throughput with lower p99 ({scenario}): "
                f"{ratio(tput):.2f}x, p99 {p99['ours']:.1f} vs {p99['baseline']:.1f} ms"
            )
    echo = find("serving vs Python HTTP ceiling", "concurrency 32")
    if echo:
        share = echo["ours"] / echo["baseline"]
        lines.append(
            f"- {'MET' if share >= 0.5 else 'NOT MET'}: single-item throughput >= half the echo ceiling "
            f"(concurrency 32): {share:.1%} of {echo['baseline']:,.0f} requests/s"
        )
    offline = find("offline batch scoring", "rows")
    if offline:
        lines.append(
            f"- {'MET' if offline['ours'] >= 100_000 else 'NOT MET'}: batch scoring >= 100,000 rows/s: "
            f"{offline['ours']:,.0f} rows/s"
        )
    return lines


def write_results(figures: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    for f in figures:
        f["ratio"] = ratio(f)
    RESULTS_JSON.write_text(json.dumps({"meta": meta, "figures": figures}, indent=2, default=float) + "\n")
    lines = [
        "# Benchmark results",
        "",
        f"`make bench` ({meta['command']}) on {meta['machine']}, {meta['finished_at']}, "
        f"{meta['seconds'] / 60:.1f} min. Medians over alternating rounds (A B, B A, ...) within this one run. "
        "Ratio: how many times better this project is than the baseline (> 1 = better; for latency and time, "
        "baseline / ours). Load generator and servers share the machine's cores, all traffic on loopback.",
        "",
        "## Goals",
        "",
        *goals(figures),
        "",
        "## Figures",
        "",
        "| group | figure | this project | baseline | ratio | baseline is | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        r = f"{f['ratio']:.2f}x" if f["ratio"] is not None else "—"
        lines.append(
            f"| {f['group']} | {f['figure']} | {_fmt(f['ours'], f['unit'])} | "
            f"{_fmt(f['baseline'], f['unit'])} | {r} | {f['baseline_name']} | `{f['command']}` |"
        )
    notes = [f for f in figures if f.get("note")]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {f['group']} / {f['figure']}: {f['note']}" for f in notes]
    lines += ["", "Raw per-run numbers: bench/results.json (`raw`), server logs: bench/out/logs/.", ""]
    RESULTS_MD.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip training at 1M rows; fewer rounds")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma list of {GROUPS}")
    args = parser.parse_args()
    only = set(args.only.split(","))
    start = time.perf_counter()
    prepared = prepare()
    figures: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    if "serving" in only:
        rounds = 2 if args.quick else 3
        log(f"serving: {rounds} rounds")
        measured = bench_serving.measure(rounds, bench_serving.SCENARIOS)
        figures += bench_serving.summarise(measured, rounds)
        raw["serving"] = measured
    if "inference" in only:
        log("inference core")
        figures += bench_inference.run(prepared.bundle, prepared.data, rounds=5)
    if "offline" in only:
        log("offline batch scoring, 1M rows")
        figures += bench_offline.run(prepared.bundle, rows=1_000_000, rounds=1 if args.quick else 2)
    if "training" in only:
        log("training at several sizes")
        figures += training_figures(args.quick)
    seconds = time.perf_counter() - start
    meta = {
        "command": "python bench/run_all.py"
        + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if only != set(GROUPS) else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": seconds,
        "bench_model": str(prepared.bundle),
        "raw": raw,
    }
    write_results(figures, meta)
    log(f"wrote {RESULTS_MD} and {RESULTS_JSON} in {seconds / 60:.1f} min")
    print(RESULTS_MD.read_text())


if __name__ == "__main__":
    main()
