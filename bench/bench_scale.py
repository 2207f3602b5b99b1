"""Many workers: single listings at concurrency 32 on SQLite and PostgreSQL, 1, 2 and 4 uvicorn workers, with
the CPU time every decision costs in the service's processes and in the database's, and the FastAPI echo
endpoint as the ceiling.

    python bench/bench_scale.py --bundle models/latest [--workers 1,2,4] [--databases sqlite,postgresql]
        [--duration 8] [--rounds 3] [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--report bench/RESULTS_SCALE.md]
    (no bundle yet? --train-rows 100000 generates data and trains one first)

Every case (echo; each database x worker count) starts its own server on a fresh decision log (a new SQLite
file, or a new PostgreSQL database created for the run and dropped after), warms it up, then runs the load
generator (bench/loadgen.py, its own process) for `--duration` seconds. Cases alternate in rotating order,
round after round; the report gives medians over rounds.

CPU time per decision: utime + stime (from /proc/<pid>/stat) of the uvicorn processes, and of the
PostgreSQL processes that serve the run's database (its backends, found in pg_stat_activity) plus the
server's shared background processes (WAL writer, checkpointer, background writer, autovacuum), read before
and after the measured phase, divided by the decisions answered. The background processes serve every
database on the server, so anything else writing to it at the same time is counted too. SQLite runs in the
service's processes: it has no database process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_serve import listing  # noqa: E402
from bench.common import OUT, PYTHON, ROOT, Server, alternate, log, median, run_load, run_meta  # noqa: E402
from serving.process import free_port, service_command  # noqa: E402

CONCURRENCY = 32
SCORED_MARK = '"fallback_reason":null'  # one per listing the model really scored (not a fail-safe answer)
TICKS = os.sysconf("SC_CLK_TCK")
PG_BACKGROUND = ("walwriter", "checkpointer", "background writer", "autovacuum", "wal writer")


# -- CPU time from /proc ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS


def descendants(root: int) -> set[int]:
    """`root` and every process below it (uvicorn's worker processes)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier += children
    return found


def postgres_background() -> set[int]:
    """The server's shared background processes (WAL writer, checkpointer, ...)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if command.startswith("postgres: ") and any(name in command for name in PG_BACKGROUND):
            pids.add(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds spent by a changing set of processes between `start` and `stop`.

    A process first seen at `stop` started during the phase: all its CPU time counts."""

    def __init__(self, processes: Callable[[], Iterable[int]]) -> None:
        self.processes = processes
        self.before: dict[int, float] = {}

    def start(self) -> None:
        self.before = {pid: cpu_seconds(pid) for pid in self.processes()}

    def stop(self) -> float:
        after = {pid: cpu_seconds(pid) for pid in set(self.processes()) | set(self.before)}
        return sum(max(0.0, seconds - self.before.get(pid, 0.0)) for pid, seconds in after.items())


# -- PostgreSQL: one database per case ------------------------------------------------------------------


class PostgresDatabase:
    """A database created for one case and dropped after it; knows the pids of its backends."""

    def __init__(self, server_url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self.name = f"triage_bench_scale_{uuid.uuid4().hex[:10]}"
        self.url = make_url(server_url).set(database=self.name).render_as_string(hide_password=False)
        self._admin = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_size=1)
        self._exec(f'CREATE DATABASE "{self.name}"')

    def _exec(self, statement: str, **params: object) -> list[Any]:
        from sqlalchemy import text

        with self._admin.connect() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []

    def backends(self) -> set[int]:
        rows = self._exec("SELECT pid FROM pg_stat_activity WHERE datname = :name", name=self.name)
        return {int(row[0]) for row in rows}

    def drop(self) -> None:
        self._exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name", name=self.name)
        self._exec(f'DROP DATABASE IF EXISTS "{self.name}"')
        self._admin.dispose()


# -- one case ---------------------------------------------------------------------------------------------


def scoring_service(bundle: Path, url: str, workers: int, name: str) -> tuple[Server, list[str]]:
    """A service of `workers` processes on the decision log at `url` (its schema made, a score key created),
    not started yet, and the request headers that carry the key."""
    from serving.keys import create_key
    from serving.store import create_store

    with create_store(url) as store:
        store.init_schema()
        token = create_key(store, "bench", "score")
    port = free_port()
    env = {
        "TRIAGE_BUNDLE": str(bundle),
        "TRIAGE_DATABASE_URL": url,
        "TRIAGE_LOG_LEVEL": "WARNING",
        "TRIAGE_REQUEST_TIMEOUT_MS": "5000",
        "TRIAGE_MONITOR_REFRESH_SECONDS": "0",
    }
    command = service_command(port, workers=workers, log_level="warning")
    return Server(name, command, port, "/readyz", env=env), [f"Authorization: Bearer {token}"]


def measure_service(
    bundle: Path, database: str, workers: int, options: argparse.Namespace, bodies: Path, tmp: Path
) -> dict[str, Any]:
    """One server of `workers` processes on a fresh decision log; the measured phase's figures."""
    from serving.store import create_store

    postgres = PostgresDatabase(options.postgres_url) if database == "postgresql" else None
    url = postgres.url if postgres else f"sqlite:///{tmp / f'decisions-{uuid.uuid4().hex[:8]}.db'}"
    try:
        server, headers = scoring_service(bundle, url, workers, f"scale-{database}-{workers}w")
        port = server.port
        with server:
            assert server.proc is not None
            run_load(port, "/v1/score", bodies, CONCURRENCY, 2000 * workers, 10, headers=headers)  # warm-up
            service = CpuMeter(lambda: descendants(server.proc.pid))  # type: ignore[union-attr]
            db = CpuMeter(lambda: postgres.backends() | postgres_background()) if postgres else None
            result = _measured(port, "/v1/score", bodies, options, headers, [service, *([db] if db else [])])
            cpu = result.pop("cpu")
            service_cpu, db_cpu = cpu[0], cpu[1] if db else 0.0
        with create_store(url) as store:
            logged = store.count_decisions()
    finally:
        if postgres is not None:
            postgres.drop()
    scored = result["counts"][SCORED_MARK]
    return {
        **_summary(result),
        "scored_by_model": scored,
        "decisions_logged": logged,
        "service_cpu_s": service_cpu,
        "database_cpu_s": db_cpu,
        "service_cpu_us_per_decision": 1e6 * service_cpu / result["ok"],
        "database_cpu_us_per_decision": 1e6 * db_cpu / result["ok"],
    }


def measure_echo(options: argparse.Namespace, bodies: Path) -> dict[str, Any]:
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "echo_app:app", "--app-dir", str(ROOT / "bench")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    with Server("scale-echo", command, port, "/healthz") as server:
        assert server.proc is not None
        run_load(port, "/echo", bodies, CONCURRENCY, 2000, 10)  # warm-up
        meter = CpuMeter(lambda: descendants(server.proc.pid))  # type: ignore[union-attr]
        result = _measured(port, "/echo", bodies, options, [], [meter])
    cpu = result.pop("cpu")[0]
    return {**_summary(result), "service_cpu_s": cpu, "service_cpu_us_per_decision": 1e6 * cpu / result["ok"]}


def _measured(
    port: int, path: str, bodies: Path, options: argparse.Namespace, headers: list[str], meters: list[CpuMeter]
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    for meter in meters:
        meter.start()
    result = run_load(
        port, path, bodies, CONCURRENCY, 1_000_000, options.duration, headers=headers, count=[SCORED_MARK]
    )
    result["cpu"] = [meter.stop() for meter in meters]
    result["load_average_before"], result["load_average"] = load_before, os.getloadavg()[0]
    bad = result["requests"] - result["ok"] + sum(result["errors"].values())
    if bad:
        raise RuntimeError(
            f"{path}: {bad} failed requests: {result['statuses']} {result['errors']} {result['samples']}"
        )
    return result


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("ok", "seconds", "throughput_rps", "p50_ms", "p99_ms", "max_ms", "load_average_before", "load_average")
    return {key: result[key] for key in keys}


# -- report -----------------------------------------------------------------------------------------------


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    return {key: median([run[key] for run in runs]) for key in keys}


def table(results: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        "| case | req/s | p50 ms | p99 ms | service CPU µs/decision | database CPU µs/decision | total µs/decision |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in results.items():
        service, db = m["service_cpu_us_per_decision"], m.get("database_cpu_us_per_decision", 0.0)
        lines.append(
            f"| {name} | {m['throughput_rps']:,.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {service:,.0f} | "
            f"{db:,.0f} | {service + db:,.0f} |"
        )
    return lines


def targets(results: dict[str, dict[str, float]], worker_counts: list[int]) -> list[str]:
    """The targets, each with the figures behind it."""
    lines = []

    def total(name: str) -> float:
        m = results[name]
        return m["service_cpu_us_per_decision"] + m.get("database_cpu_us_per_decision", 0.0)

    for workers in worker_counts:
        pg, lite = f"postgresql, {workers} worker(s)", f"sqlite, {workers} worker(s)"
        if pg in results and lite in results:
            ratio = total(pg) / total(lite)
            verdict = "met" if ratio <= 1.3 else "NOT MET"
            lines.append(
                f"- CPU per decision, PostgreSQL / SQLite, {workers} worker(s): {ratio:.2f}x (<= 1.3x: {verdict})"
            )
    pg1 = results.get("postgresql, 1 worker(s)")
    for workers in worker_counts[1:]:
        pgn = results.get(f"postgresql, {workers} worker(s)")
        if pg1 and pgn:
            better = pgn["throughput_rps"] >= pg1["throughput_rps"] and pgn["p99_ms"] <= pg1["p99_ms"]
            lines.append(
                f"- PostgreSQL, {workers} workers vs 1: {pgn['throughput_rps']:,.0f} vs {pg1['throughput_rps']:,.0f} "
                f"req/s, p99 {pgn['p99_ms']:.1f} vs {pg1['p99_ms']:.1f} ms ({'met' if better else 'NOT MET'})"
            )
    echo = results.get("echo (FastAPI, 1 worker)")
    for database in ("sqlite", "postgresql"):
        one = results.get(f"{database}, 1 worker(s)")
        if echo and one:
            share = one["throughput_rps"] / echo["throughput_rps"]
            verdict = "met" if share >= 0.5 else "NOT MET"
            lines.append(f"- {database}, 1 worker, share of the echo endpoint: {share:.0%} (>= 50%: {verdict})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "latest")
    parser.add_argument("--train-rows", type=int, default=0, help="train a bundle on this many generated rows first")
    parser.add_argument("--workers", type=_counts, default=[1, 2, 4])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-echo", action="store_true", help="leave out the echo endpoint")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TRIAGE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        help="a server the run may create (and drop) databases on",
    )
    parser.add_argument("--report", type=Path, default=None, help="write the markdown table here")
    options = parser.parse_args()
    databases = [d.strip() for d in options.databases.split(",") if d.strip()]
    if not set(databases) <= {"sqlite", "postgresql"}:
        raise SystemExit("--databases: sqlite and/or postgresql")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundle = _trained(options.train_rows, tmp) if options.train_rows else options.bundle
        bodies = tmp / "bodies.json"
        bodies.write_text(json.dumps([listing(i) for i in range(2000)]))
        cases: dict[str, Callable[[], dict[str, Any]]] = {}
        if not options.no_echo:
            cases["echo (FastAPI, 1 worker)"] = lambda: measure_echo(options, bodies)
        for workers in options.workers:
            for database in databases:
                cases[f"{database}, {workers} worker(s)"] = _case(bundle, database, workers, options, bodies, tmp)
        runs = alternate(options.rounds, _logged(cases))
    results = {name: medians(case_runs) for name, case_runs in runs.items()}
    meta = run_meta("bench/bench_scale.py", started)
    lines = table(results) + [""] + targets(results, options.workers)
    print("\n".join(lines))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps({"meta": meta, "runs": runs, "medians": results}, indent=2))
    if options.report:
        loads = [run["load_average_before"] for case_runs in runs.values() for run in case_runs]
        head = [
            f"Measured {meta['finished_at']} on {meta['machine']}: `{meta['command']}` ({meta['seconds']:.0f} s; "
            f"medians of {options.rounds} rounds, {options.duration:.0f} s each; 1-minute load average before the "
            f"phases {min(loads):.1f}-{max(loads):.1f}).",
            "",
        ]
        options.report.write_text("\n".join(head + lines) + "\n")


def _case(
    bundle: Path, database: str, workers: int, options: argparse.Namespace, bodies: Path, tmp: Path
) -> Callable[[], dict[str, Any]]:
    return lambda: measure_service(bundle, database, workers, options, bodies, tmp)


def _logged(cases: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, Callable[[], dict[str, Any]]]:
    def wrap(name: str, run: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        def logged() -> dict[str, Any]:
            result = run()
            cpu = result["service_cpu_us_per_decision"] + result.get("database_cpu_us_per_decision", 0.0)
            log(
                f"{name}: {result['throughput_rps']:,.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
                f"p99 {result['p99_ms']:.1f} ms, {cpu:,.0f} µs CPU/decision, load {result['load_average_before']:.1f}"
            )
            return result

        return logged

    return {name: wrap(name, run) for name, run in cases.items()}


def _trained(rows: int, out: Path) -> Path:
    triage = Path(PYTHON).parent / "triage"
    subprocess.run([triage, "generate", "--rows", str(rows), "--out", out / "data"], check=True)
    subprocess.run(
        [triage, "train", "--data", out / "data/reviews.parquet", "--out", out / "models", "--no-mlflow"], check=True
    )
    return out / "models" / "latest"


def _counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts are positive integers, e.g. 1,2,4")
    return counts


if __name__ == "__main__":
    main()
