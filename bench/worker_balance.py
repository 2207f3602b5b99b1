"""How a multi-worker service's keep-alive connections fall across its worker processes.

    python bench/worker_balance.py [--bundle DIR] [--workers 2] [--rounds 3] [--duration 6]

`triage serve --workers N` runs N uvicorn processes on one listening socket; a keep-alive connection stays
with the process that accepted it. The load generator (bench/loadgen.py, as in bench_scale.py) opens its
32 connections at once, so how they fall is decided in that first instant and holds for the whole run.
Each round starts a fresh server on a fresh SQLite decision log, runs the load, and in the middle of it
reads the established connections on the service's port and the process holding each (`ss -tnp`).
Prints, per round, connections per worker, throughput and latency percentiles.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_scale import scoring_service  # noqa: E402
from bench.bench_serve import listing  # noqa: E402
from bench.common import log, prepare, run_load  # noqa: E402

CONCURRENCY = 32


def connections_by_process(port: int) -> dict[int, int]:
    """Established TCP connections on the server side of `port`, counted by the process holding each."""
    listing_ = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    return dict(collections.Counter(int(pid) for pid in re.findall(r"pid=(\d+)", listing_)))


def one_round(bundle: Path, workers: int, duration: float, bodies: Path, tmp: Path) -> dict[str, Any]:
    url = f"sqlite:///{tmp / f'decisions-{uuid.uuid4().hex[:8]}.db'}"
    server, headers = scoring_service(bundle, url, workers, f"balance-{workers}w")
    port = server.port
    with server:
        result: dict[str, Any] = {}

        def load_run() -> None:
            result.update(run_load(port, "/v1/score", bodies, CONCURRENCY, 10_000_000, duration, headers=headers))

        load = threading.Thread(target=load_run)
        load.start()
        time.sleep(duration / 2)
        placed = connections_by_process(port)
        load.join()
    return {
        "connections": sorted([*placed.values(), *[0] * (workers - len(placed))], reverse=True),  # idle: 0
        "throughput": result["throughput_rps"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a bundle (default: the bench bundle, trained if missing)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0)
    options = parser.parse_args()
    if shutil.which("ss") is None:
        sys.exit("worker_balance: needs `ss` (iproute2) to see which process holds each connection")
    bundle = options.bundle or prepare().bundle
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        bodies = tmp / "bodies.json"
        bodies.write_text(json.dumps([listing(i) for i in range(2000)]))
        header = (
            f"| round | connections per worker (of {CONCURRENCY}) | busiest worker's share | req/s | p50 ms | p99 ms |"
        )
        print(header)
        print("|---|---|---|---|---|---|")
        for k in range(options.rounds):
            log(f"round {k + 1} of {options.rounds}: {options.workers} workers, {options.duration:g} s")
            row = one_round(bundle, options.workers, options.duration, bodies, tmp)
            placed = row["connections"]
            share = placed[0] / sum(placed) if placed else float("nan")
            print(
                f"| {k + 1} | {' / '.join(map(str, placed))} | {share:.0%} | {row['throughput']:,.0f} | "
                f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} |"
            )


if __name__ == "__main__":
    main()
