"""Benchmark the scoring service: a real uvicorn process, the decision log on, loopback only.

Usage: python bench/bench_serve.py --bundle models/latest [--workers 1,2] [--duration 8] [--client raw|httpx]
       (no bundle yet? --train-rows 100000 generates data and trains one into a temp dir first)

For each worker count (`--workers 1,2` measures one and two uvicorn worker processes, one after the
other) starts uvicorn on a fresh temp SQLite decision log, then, for each phase, runs an asyncio load generator in a
separate process (a bare HTTP/1.1 keep-alive client by default, httpx with --client httpx): single
listings at concurrency 1 and 32, then batches. Prints p50/p99 latency and throughput per phase and the
machine's load average before and after, and writes bench/out/serve.json. The generator shares the
cores with the server; its CPU share is printed so that a client-bound result is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving.process import free_port, service_command, service_env, wait_until_up

REPO = Path(__file__).resolve().parents[1]


def listing(i: int) -> dict[str, object]:
    titles = [
        "Leather wallet brown",
        "Rolex Submariner watch",
        "Vitamin C 1000mg tablets",
        "USB-C cable 2m",
        "Nike running shoes size 42",
        "Hardcover cookbook 2nd edition",
    ]
    return {
        "listing_id": f"bench-{i}",
        "merchant_id": f"M{i % 3000:06d}",
        "created_at": "2025-12-01T10:00:00Z",
        "title": titles[i % len(titles)],
        "description": "Brand new, fast shipping, see photos.",
        "brand": ["", "Rolex", "Nike"][i % 3],
        "category": ["fashion", "watches", "health", "electronics"][i % 4],
        "market": ["DE", "FR", "US"][i % 3],
        "price": 5.0 + (i % 400),
        "merchant_tenure_days": float(i % 2000),
        "image_count": i % 8,
        "has_certificate": i % 2,
    }


# -- load generator (runs in its own process) -----------------------------------------------------------


def _bodies(batch: int) -> list[bytes]:
    """Request bodies encoded up front: the client's CPU competes with the server's on a small machine."""
    return [
        json.dumps({"items": [listing(n * batch + k) for k in range(batch)]} if batch else listing(n)).encode()
        for n in range(20 if batch else 2000)
    ]


async def _load_httpx(url: str, token: str, concurrency: int, duration: float, limit: int, batch: int) -> dict:
    import httpx

    path = "/v1/score/batch" if batch else "/v1/score"
    bodies, failures, counter = _bodies(batch), [0], itertools.count()
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    deadline = time.perf_counter() + duration
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline and len(latencies) + failures[0] < limit:
                start = time.perf_counter()
                response = await client.post(path, content=bodies[next(counter) % len(bodies)])
                _record(latencies, failures, response.status_code == 200, time.perf_counter() - start)

        return await _timed(worker, concurrency, latencies, failures, batch)


async def _load_raw(url: str, token: str, concurrency: int, duration: float, limit: int, batch: int) -> dict:
    """A bare asyncio HTTP/1.1 keep-alive client: on 2 cores httpx costs more CPU per request than the
    service, so with httpx the numbers measure the client as much as the server."""
    host, port = url.removeprefix("http://").split(":")
    path = "/v1/score/batch" if batch else "/v1/score"
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
    wire = [
        f"{head}Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n".encode() + b for b in _bodies(batch)
    ]
    latencies: list[float] = []
    failures, counter = [0], itertools.count()
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < deadline and len(latencies) + failures[0] < limit:
            start = time.perf_counter()
            writer.write(wire[next(counter) % len(wire)])
            response = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in response.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            _record(latencies, failures, response.startswith(b"HTTP/1.1 200"), time.perf_counter() - start)
        writer.close()

    return await _timed(worker, concurrency, latencies, failures, batch)


def _record(latencies: list[float], failures: list[int], ok: bool, seconds: float) -> None:
    if ok:
        latencies.append(seconds)
    else:
        failures[0] += 1


async def _timed(worker, concurrency: int, latencies: list[float], failures: list[int], batch: int) -> dict:  # noqa: ANN001
    cpu_start, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_start
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float:
        return latencies[min(n - 1, int(q * n))] * 1000 if n else float("nan")

    return {
        "requests": n,
        "failures": failures[0],
        "wall_s": wall,
        "req_per_s": n / wall,
        "items_per_s": n * max(batch, 1) / wall,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000 if n else float("nan"),
        "client_cpu_share": cpu / wall,
    }


def run_load(url: str, token: str, client: str, concurrency: int, duration: float, limit: int, batch: int) -> dict:
    """One phase in a fresh process, so the generator never shares an interpreter with the server."""
    args = [
        sys.executable,
        __file__,
        "--load",
        url,
        token,
        client,
        str(concurrency),
        str(duration),
        str(limit),
        str(batch),
    ]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- server ---------------------------------------------------------------------------------------------


def start_server(bundle: Path, database_url: str, port: int, workers: int, max_batch: int) -> subprocess.Popen:
    env = service_env(
        bundle, database_url, log_level="WARNING", max_batch_items=str(max_batch), request_timeout_ms="5000"
    )
    command = service_command(port, workers=workers, log_level="warning")
    server = subprocess.Popen(command, cwd=REPO, env=env)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server, timeout_s=120)
    except RuntimeError as error:
        server.kill()
        raise SystemExit(f"the server did not become ready: {error}") from error
    return server


def train_bundle(rows: int, out: Path) -> Path:
    subprocess.run([REPO / ".venv/bin/triage", "generate", "--rows", str(rows), "--out", out / "data"], check=True)
    subprocess.run(
        [
            REPO / ".venv/bin/triage",
            "train",
            "--data",
            out / "data/reviews.parquet",
            "--out",
            out / "models",
            "--no-mlflow",
        ],
        check=True,
    )
    return out / "models" / "latest"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=REPO / "models" / "latest")
    parser.add_argument("--train-rows", type=int, default=0, help="train a bundle on this many generated rows first")
    parser.add_argument(
        "--workers", type=_counts, default=[1], help="uvicorn worker processes; a list (1,2) runs each in turn"
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per phase")
    parser.add_argument("--max-requests", type=int, default=50_000, help="cap per phase")
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="listings per batch request (the service's default bound)"
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: bare asyncio HTTP/1.1 (default) or httpx",
    )
    options = parser.parse_args()

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = train_bundle(options.train_rows, Path(tmp)) if options.train_rows else options.bundle
        for workers in options.workers:
            runs.append(run_server_phases(bundle, Path(tmp) / f"decisions-{workers}w.db", workers, options))
    result = {"client": options.client, "cores": os.cpu_count(), "batch_size": options.batch_size, "runs": runs}
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve.json").write_text(json.dumps(result, indent=2))
    for run in runs:
        print(
            f"workers={run['workers']} cores={os.cpu_count()} client={options.client} "
            f"decisions logged={run['decisions_logged']} "
            f"load average before={run['load_average_before']:.1f} after={run['load_average']:.1f}"
        )
        print(
            f"{'phase':<12} {'requests':>9} {'req/s':>9} {'items/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'fail':>5} "
            f"{'client cpu':>10}"
        )
        for name, p in run["phases"].items():
            print(
                f"{name:<12} {p['requests']:>9} {p['req_per_s']:>9.0f} {p['items_per_s']:>9.0f} "
                f"{p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f} {p['failures']:>5} {p['client_cpu_share']:>9.0%}"
            )
        for target, value, met in targets(run["phases"]):
            print(f"  target {target:<46} {value:<24} {'met' if met else 'NOT MET'}")


def targets(phases: dict[str, dict]) -> list[tuple[str, str, bool]]:
    """The service's performance targets on 2 cores, each with the measured value and whether it is met."""
    c1, c32 = phases["single_c1"], phases["single_c32"]
    batch = max((p for name, p in phases.items() if name.startswith("batch")), key=lambda p: p["items_per_s"])
    return [
        ("single listing, concurrency 1: p99 < 10 ms", f"{c1['p99_ms']:.1f} ms", c1["p99_ms"] < 10),
        ("single listing, concurrency 32: >= 1,000 req/s", f"{c32['req_per_s']:,.0f} req/s", c32["req_per_s"] >= 1000),
        (
            "batch: >= 20,000 items/s (best batch phase)",
            f"{batch['items_per_s']:,.0f} items/s",
            batch["items_per_s"] >= 20_000,
        ),
    ]


def run_server_phases(bundle: Path, database: Path, workers: int, options: argparse.Namespace) -> dict:
    """Every phase against one uvicorn with `workers` processes on its own decision log."""
    from serving.keys import create_key
    from serving.store import create_store

    database_url = f"sqlite:///{database}"
    with create_store(database_url) as store:
        store.init_schema()
        token = create_key(store, "bench", "score")
    load_before = os.getloadavg()[0]
    port = free_port()
    server = start_server(bundle, database_url, port, workers, options.batch_size)
    url = f"http://127.0.0.1:{port}"
    try:
        load = functools.partial(run_load, url, token, options.client)
        load(4 * workers, 1.0, 500, 0)  # warm-up (every worker)
        phases = {
            "single_c1": load(1, options.duration, options.max_requests, 0),
            "single_c32": load(32, options.duration, options.max_requests, 0),
            "batch_c1": load(1, options.duration, options.max_requests, options.batch_size),
            "batch_c4": load(4, options.duration, options.max_requests, options.batch_size),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
    with create_store(database_url) as store:
        logged = store.count_decisions()
    return {
        "workers": workers,
        "load_average_before": load_before,
        "load_average": os.getloadavg()[0],
        "decisions_logged": logged,
        "phases": phases,
    }


def _counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts are positive integers, e.g. 1 or 1,2")
    return counts


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        url, token, client, concurrency, duration, limit, batch = sys.argv[2:9]
        generator = _load_raw if client == "raw" else _load_httpx
        result = asyncio.run(generator(url, token, int(concurrency), float(duration), int(limit), int(batch)))
        print(json.dumps(result))
    else:
        main()
