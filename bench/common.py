"""Shared pieces of the benchmarks: paths, the cached bench model, server processes, medians, A/B rounds."""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PYTHON = sys.executable
BIN = Path(PYTHON).parent
LISTING_COLUMNS = [
    "listing_id",
    "merchant_id",
    "created_at",
    "title",
    "description",
    "brand",
    "category",
    "market",
    "price",
    "merchant_tenure_days",
    "image_count",
    "has_certificate",
]


def run_meta(script: str, start: float) -> dict[str, Any]:
    """What a benchmark report says about its run: the command, the machine, when it finished, how long."""
    return {
        "command": f"python {script} " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 1),
    }


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def alternate(rounds: int, cases: dict[str, Callable[[], Any]]) -> dict[str, list[Any]]:
    """Run every case once per round, in rotating order (A B, B A, ...), so drift hits all cases alike."""
    names = list(cases)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            results[name].append(cases[name]())
    return results


# --- the model every benchmark uses ---------------------------------------------------------------------


@dataclass
class Prepared:
    rows: int
    data: Path  # reviews.parquet the bundle was trained on
    bundle: Path
    tracking_uri: str
    model_version: str  # registered version of `listing-risk` in the bench's own tracking store
    workdir: Path  # cwd for MLflow commands (its ./mlruns artifact store lives here)


def prepare(rows: int = 200_000, seed: int = 0) -> Prepared:
    """Generate data and train one bundle (registered in bench/out/prepared/mlflow.db); cached across runs."""
    workdir = OUT / f"prepared-{rows}"
    marker = workdir / "prepared.json"
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    if marker.exists():
        info = json.loads(marker.read_text())
        if Path(info["bundle"]).is_dir():
            log(f"reusing bench model {info['bundle']} (delete {workdir} to retrain)")
            return Prepared(
                rows, Path(info["data"]), Path(info["bundle"]), tracking_uri, info["model_version"], workdir
            )
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    data_dir = workdir / "data"
    log(f"generating {rows:,} rows and training the bench model (about a minute)")
    subprocess.run(
        [str(BIN / "triage"), "generate", "--rows", str(rows), "--seed", str(seed), "--out", str(data_dir)],
        check=True,
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            str(BIN / "triage"),
            "train",
            "--data",
            str(data_dir / "reviews.parquet"),
            "--out",
            str(workdir / "models"),
            "--seed",
            str(seed),
        ],
        check=True,
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    bundle = (workdir / "models" / "latest").resolve()
    version = _candidate_version(tracking_uri)
    marker.write_text(
        json.dumps({"data": str(data_dir / "reviews.parquet"), "bundle": str(bundle), "model_version": version})
    )
    return Prepared(rows, data_dir / "reviews.parquet", bundle, tracking_uri, version, workdir)


def _candidate_version(tracking_uri: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias("listing-risk", "candidate").version)


def ensure_data(rows: int, seed: int = 1) -> Path:
    """Generated listings for offline scoring (a different seed from the training data); cached."""
    out = OUT / f"data-{rows}-seed{seed}"
    if not (out / "reviews.parquet").exists():
        log(f"generating {rows:,} rows for offline scoring")
        subprocess.run(
            [str(BIN / "triage"), "generate", "--rows", str(rows), "--seed", str(seed), "--out", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out / "reviews.parquet"


# --- server processes ----------------------------------------------------------------------------------


class Server:
    """A server subprocess in its own process group; started, waited for, and stopped by its own pid."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        health: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.name, self.cmd, self.port, self.health = name, cmd, port, health
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or ROOT
        self.start_timeout = start_timeout
        self.log_path = OUT / "logs" / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, cwd=self.cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if self._healthy():
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} not healthy after {self.start_timeout:.0f} s; see {self.log_path}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.health}", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the group: `mlflow models serve` runs uvicorn as a child
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)


def run_load(
    port: int,
    path: str,
    bodies_file: Path,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    warmup: int = 0,
    headers: Sequence[str] = (),
    count: Sequence[str] = (),
) -> dict[str, Any]:
    """One bounded run of bench/loadgen.py in its own process; returns its JSON summary."""
    cmd = [
        PYTHON,
        str(ROOT / "bench" / "loadgen.py"),
        "--port",
        str(port),
        "--path",
        path,
        "--bodies",
        str(bodies_file),
        "--concurrency",
        str(concurrency),
        "--max-requests",
        str(max_requests),
        "--max-seconds",
        str(max_seconds),
        "--warmup",
        str(warmup),
    ]
    for header in headers:
        cmd += ["--header", header]
    for pattern in count:
        cmd += ["--count", pattern]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max_seconds * 3 + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
