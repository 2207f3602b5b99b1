"""Where a single listing's CPU time goes: one worker served in this process under the load generator
(concurrency 32), its CPU time per decision by thread, and the scoring threads' share split by stage.

    python bench/scale_breakdown.py --bundle models/latest [--database sqlite|postgresql] [--duration 6]
        [--report bench/RESULTS_SCALE.md]

Threads: the event loop (HTTP parsing, routing, the key check, body validation, the response, the micro-
batching), the scoring threads (the model: features, ONNX, reasons, product identification, rules,
decisions) and the decision-log writer. utime + stime per thread from /proc/self/task/<tid>/stat, read
before and after the measured phase. Stages: cProfile over `score` + `decide_safely` for batches of the
size the scorer formed under that load (its mean micro-batch), the profile's shares applied to the
scoring threads' measured CPU time (cProfile slows Python code more than native code, so the Python
stages' shares are upper bounds).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_scale import SCORED_MARK, PostgresDatabase  # noqa: E402
from bench.bench_serve import listing  # noqa: E402
from bench.common import PYTHON, ROOT  # noqa: E402
from serving.process import free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
THREAD_GROUPS = {"triage-score": "scoring threads (the model)", "triage-group-commit": "decision-log writer"}
STAGES = {  # stage: (file, function) whose cumulative time it is, minus the stages nested in it
    "text n-grams (features/text.py)": ("features/text.py", "vectorize"),
    "other features": ("features/builder.py", "transform_records"),
    "reasons (feature contributions)": ("serving/engine.py", "_reasons"),
    "product identification": ("serving/engine.py", "identify"),
    "rules": ("serving/engine.py", "match_all_rules"),
    "decisions (thresholds, audit draw, records)": ("serving/engine.py", "decide"),
    "model (ONNX, calibration, tiers)": ("serving/engine.py", "score"),
}
NESTED = {
    "other features": ["text n-grams (features/text.py)"],
    "decisions (thresholds, audit draw, records)": ["product identification", "rules"],
    "model (ONNX, calibration, tiers)": ["other features", "reasons (feature contributions)"],  # cumulative
}


def thread_cpu() -> dict[int, float]:
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


def thread_group(native_id: int, names: dict[int, str]) -> str:
    if native_id == os.getpid():
        return "event loop (HTTP, routing, key, validation, response)"
    name = names.get(native_id, "")
    return next((group for prefix, group in THREAD_GROUPS.items() if name.startswith(prefix)), "other threads")


def served_breakdown(bundle: Path, database_url: str, token: str, duration: float) -> dict[str, Any]:
    """Serve one worker here, load it from another process; CPU µs per decision by thread group."""
    import uvicorn

    from serving import scorer as scorer_module
    from serving.app import create_app

    os.environ.update(
        {
            "TRIAGE_BUNDLE": str(bundle),
            "TRIAGE_DATABASE_URL": database_url,
            "TRIAGE_LOG_LEVEL": "WARNING",
            "TRIAGE_MONITOR_REFRESH_SECONDS": "0",
            "TRIAGE_REQUEST_TIMEOUT_MS": "5000",
        }
    )
    groups: list[int] = []
    decide_group = scorer_module.Scorer._decide_group

    async def counted(self: Any, group: list[Any]) -> None:
        groups.append(len(group))
        await decide_group(self, group)

    scorer_module.Scorer._decide_group = counted  # type: ignore[method-assign]
    port = free_port()
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    result: dict[str, Any] = {}

    def drive() -> None:
        try:
            while not server.started:
                time.sleep(0.1)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
                json.dump([listing(i) for i in range(2000)], handle)
            command = [PYTHON, str(ROOT / "bench" / "loadgen.py"), "--port", str(port), "--path", "/v1/score"]
            command += ["--bodies", handle.name, "--concurrency", "32", "--header", f"Authorization: Bearer {token}"]
            command += ["--count", SCORED_MARK]
            subprocess.run([*command, "--max-requests", "3000", "--max-seconds", "10"], check=True, capture_output=True)
            groups.clear()
            before = thread_cpu()
            run = [*command, "--max-requests", "1000000", "--max-seconds", str(duration)]
            out = subprocess.run(run, check=True, capture_output=True, text=True)
            after = thread_cpu()
            load = json.loads(out.stdout.strip().splitlines()[-1])
            names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
            by_group: dict[str, float] = {}
            for tid, seconds in after.items():
                group = thread_group(tid, names)
                by_group[group] = by_group.get(group, 0.0) + seconds - before.get(tid, 0.0)
            result.update(
                load=load,
                us_per_decision={g: 1e6 * s / load["ok"] for g, s in by_group.items()},
                mean_micro_batch=sum(groups) / max(1, len(groups)),
            )
        finally:
            server.should_exit = True

    threading.Thread(target=drive, daemon=True).start()
    server.run()
    scorer_module.Scorer._decide_group = decide_group  # type: ignore[method-assign]
    return result


def stage_shares(bundle: Path, database_url: str, batch: int, repeats: int = 100) -> dict[str, float]:
    """Each stage's share of `score` + `decide_safely` for batches of `batch` listings (cProfile)."""
    from serving.api.score import bodies_of
    from serving.models import load_engine
    from serving.settings import get_settings
    from serving.store import create_store
    from serving.store.records import utcnow

    with create_store(database_url) as store:
        store.init_schema()  # a fresh log (the bench's server created the schema already)
        engine = load_engine(bundle, "path", store, None)
    bodies = bodies_of(engine, get_settings())
    listings = [bodies.fields(bodies.score.model_validate(listing(i))) for i in range(batch)]
    for item in listings:
        item.pop("request_id")
    requests = [None] * batch

    def run() -> None:
        engine.decide_safely(listings, engine.score(listings), requests, [utcnow()] * batch)

    run()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(repeats):
        run()
    profile.disable()
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    cumulative: dict[str, float] = {}
    for stage, (path, function) in STAGES.items():
        cumulative[stage] = sum(
            entry[3] for (file, _, name), entry in stats.items() if file.endswith(path) and name == function
        )
    total = cumulative["model (ONNX, calibration, tiers)"] + cumulative["decisions (thresholds, audit draw, records)"]
    own = {stage: cumulative[stage] - sum(cumulative[n] for n in NESTED.get(stage, [])) for stage in STAGES}
    return {stage: seconds / total for stage, seconds in own.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "latest")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TRIAGE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--report", type=Path, default=None, help="append the table to this markdown file")
    options = parser.parse_args()
    from serving.keys import create_key
    from serving.store import create_store

    with tempfile.TemporaryDirectory() as tmp:
        postgres = PostgresDatabase(options.postgres_url) if options.database == "postgresql" else None
        url = postgres.url if postgres else f"sqlite:///{Path(tmp) / 'decisions.db'}"
        try:
            with create_store(url) as store:
                store.init_schema()
                token = create_key(store, "bench", "score")
            served = served_breakdown(options.bundle, url, token, options.duration)
            batch = max(1, round(served["mean_micro_batch"]))
            shares = stage_shares(options.bundle, url, batch)
        finally:
            if postgres is not None:
                postgres.drop()
    load = served["load"]
    lines = [
        f"`python bench/scale_breakdown.py {' '.join(sys.argv[1:])}`: {options.database}, 1 worker in-process, "
        f"concurrency 32: {load['throughput_rps']:,.0f} req/s, p50 {load['p50_ms']:.1f} ms, "
        f"p99 {load['p99_ms']:.1f} ms; "
        f"mean micro-batch {served['mean_micro_batch']:.1f} listings; load average {os.getloadavg()[0]:.1f}",
        "",
        "| where | CPU µs per decision |",
        "|---|---|",
    ]
    per_thread = served["us_per_decision"]
    for group, micros in sorted(per_thread.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {group} | {micros:,.0f} |")
        if group.startswith("scoring threads"):
            for stage, share in sorted(shares.items(), key=lambda kv: -kv[1]):
                lines.append(f"| &nbsp;&nbsp;{stage} | {micros * share:,.0f} ({share:.0%}) |")
    lines.append(f"| total | {sum(per_thread.values()):,.0f} |")
    print("\n".join(lines))
    if options.report:
        with options.report.open("a") as report:
            report.write("\n## Where a single listing's CPU time goes\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
