"""A small HTTP/1.1 load generator: asyncio (uvloop) keep-alive connections, run in its own process.

    python bench/loadgen.py --port 8000 --path /v1/score --bodies bodies.json --concurrency 32 \
        --max-requests 20000 --max-seconds 8 [--header 'Authorization: Bearer ...'] [--count '"risk":null']

`--bodies` is a JSON list of request bodies (each already a JSON document); connection i sends bodies
round-robin. The run stops at --max-requests or --max-seconds, whichever comes first (both bounded).
Prints one JSON object: requests, ok (2xx), statuses, errors, seconds, throughput, latency percentiles (ms),
and for each --count pattern how many times it occurred in the response bodies (e.g. to prove that every
item was really scored rather than served by a fallback).

Why not httpx: an httpx client costs more CPU per request than the servers under test, so on a 2-core box it
would measure itself. This client speaks just enough HTTP/1.1 (Content-Length or chunked responses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np


class Stats:
    def __init__(self, patterns: list[bytes]) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.patterns = patterns
        self.pattern_counts = [0] * len(patterns)
        self.samples: dict[int, str] = {}

    def record(self, status: int, body: bytes, seconds: float) -> None:
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        for i, pattern in enumerate(self.patterns):
            self.pattern_counts[i] += body.count(pattern)
        if status not in self.samples:
            self.samples[status] = body[:300].decode("utf-8", "replace")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server asked to close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = None, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return status, b"".join(parts), close
    if length is None:
        return status, await reader.read(), True
    return status, await reader.readexactly(length), close


def build_requests(host: str, port: int, path: str, bodies: list[bytes], headers: list[str]) -> list[bytes]:
    extra = "".join(f"{h}\r\n" for h in headers)
    out = []
    for body in bodies:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def worker(
    index: int, args: argparse.Namespace, requests: list[bytes], stats: Stats, budget: dict[str, float]
) -> None:
    reader = writer = None
    i = index
    while budget["left"] > 0 and time.perf_counter() < budget["deadline"]:
        budget["left"] -= 1
        if writer is None:
            reader, writer = await asyncio.open_connection(args.host, args.port)
        request = requests[i % len(requests)]
        i += args.concurrency
        start = time.perf_counter()
        try:
            writer.write(request)
            status, body, close = await asyncio.wait_for(read_response(reader), args.request_timeout)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none is fatal to the run
            name = type(exc).__name__
            stats.errors[name] = stats.errors.get(name, 0) + 1
            writer.close()
            reader = writer = None
            continue
        stats.record(status, body, time.perf_counter() - start)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run(args: argparse.Namespace) -> dict:
    raw = json.loads(Path(args.bodies).read_text())
    bodies = [json.dumps(b, separators=(",", ":")).encode() if not isinstance(b, str) else b.encode() for b in raw]
    requests = build_requests(args.host, args.port, args.path, bodies, args.header)
    if args.warmup:
        warm = Stats([])
        budget = {"left": float(args.warmup), "deadline": time.perf_counter() + args.max_seconds}
        await asyncio.gather(*(worker(i, args, requests, warm, budget) for i in range(args.concurrency)))
    stats = Stats([p.encode() for p in args.count])
    start = time.perf_counter()
    budget = {"left": float(args.max_requests), "deadline": start + args.max_seconds}
    await asyncio.gather(*(worker(i, args, requests, stats, budget) for i in range(args.concurrency)))
    seconds = time.perf_counter() - start
    lat = np.asarray(stats.latencies) * 1000
    ok = sum(n for s, n in stats.statuses.items() if 200 <= s < 300)
    return {
        "path": args.path,
        "concurrency": args.concurrency,
        "requests": len(stats.latencies),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "errors": stats.errors,
        "seconds": seconds,
        "throughput_rps": ok / seconds if seconds else 0.0,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p90_ms": float(np.percentile(lat, 90)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "max_ms": float(lat.max()) if len(lat) else None,
        "counts": dict(zip(args.count, stats.pattern_counts, strict=True)),
        "samples": {str(k): v for k, v in stats.samples.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--bodies", required=True, help="JSON file: a list of request bodies")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--max-requests", type=int, default=1000)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=0, help="requests sent (and discarded) first")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--count", action="append", default=[], help="substring to count in response bodies")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loadgen only targets loopback")
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
