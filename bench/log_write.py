"""What writing decisions costs, without the service: `record_decisions` of groups of a given size, one
group after another, on a fresh SQLite file and a fresh PostgreSQL database, in alternating rounds.

    python bench/log_write.py [--groups 1500] [--sizes 4,16] [--rounds 2] [--report bench/out/log_write.md]

Per case: CPU of this process per decision (the client side: SQLAlchemy, the driver, the writer thread),
CPU of the run's PostgreSQL backends and the server's shared background processes per decision, and the
wall time a group takes (mostly round trips and the commit's flush). From two group sizes it fits a fixed
cost a group plus a cost a decision.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_scale import CpuMeter, PostgresDatabase, postgres_background  # noqa: E402
from bench.common import log, median, run_meta  # noqa: E402
from serving.store import create_store  # noqa: E402
from serving.store.records import DecisionRecord, utcnow  # noqa: E402


def decisions(n: int, tag: str) -> list[DecisionRecord]:
    """n decisions shaped like the service's: mostly human review, some auto-passes, 2% audited."""
    now = utcnow()
    records = []
    for i in range(n):
        automated = i % 3 == 0
        records.append(
            DecisionRecord(
                request_id=f"{tag}-{i}",
                listing_id=f"listing-{tag}-{i}",
                received_at=now,
                decided_at=now,
                decision="auto_pass" if automated else "human_review",
                automated=automated,
                risk=0.01 * (i % 100),
                model_version="bench",
                policy_version="bench",
                t_pass=0.02,
                t_block=1.0,
                priority=0.01 * (i % 100),
                rules_matched=[],
                reasons=[{"feature": "price", "contribution": 0.1}],
                qa_sample=automated and i % 50 == 0,
                listing={"listing_id": f"listing-{tag}-{i}", "title": "a title of some length", "price": 12.5},
                key_id="bench",
                inclusion_prob=0.02 if automated else 1.0,
            )
        )
    return records


def measure(database: str, size: int, groups: int, server_url: str, tmp: Path) -> dict[str, Any]:
    postgres = PostgresDatabase(server_url) if database == "postgresql" else None
    url = postgres.url if postgres else f"sqlite:///{tmp / f'log-{uuid.uuid4().hex[:8]}.db'}"
    batches = [decisions(size, f"{g}") for g in range(groups)]
    try:
        with create_store(url) as store:
            store.init_schema()
            store.record_decisions(decisions(size, "warm"))
            server = CpuMeter(lambda: (postgres.backends() | postgres_background()) if postgres else set())
            server.start()
            cpu, wall = time.process_time(), time.perf_counter()
            for batch in batches:
                store.record_decisions(batch)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            server_cpu = server.stop()
            written = store.count_decisions()
    finally:
        if postgres:
            postgres.drop()
    n = size * groups
    return {
        "client_us": cpu / n * 1e6,
        "server_us": server_cpu / n * 1e6,
        "group_ms": wall / groups * 1e3,
        "written": written,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=1500)
    parser.add_argument("--sizes", default="4,16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--report", type=Path, default=None)
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    cases = [(db, size) for db in options.databases.split(",") for size in sizes]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {case: [] for case in cases}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(options.rounds):
            for database, size in cases if round_ % 2 == 0 else reversed(cases):
                found = measure(database, size, options.groups, options.postgres_url, Path(tmp))
                runs[(database, size)].append(found)
                log(f"round {round_ + 1} {database}, {size} a group: {found}")
    lines = [
        f"# Writing decisions: {options.groups} groups a case, medians of {options.rounds} rounds",
        "",
        "Measured {finished_at} on {machine}: `{command}` ({seconds:.0f} s)".format(
            **run_meta("bench/log_write.py", started)
        ),
        "",
        "| decision log | decisions a group | client CPU µs/decision | database CPU µs/decision | ms a group |",
        "|---|---|---|---|---|",
    ]
    result = {case: {k: median([r[k] for r in found]) for k in found[0]} for case, found in runs.items()}
    for (db, size), figures in result.items():
        wrote = (options.groups + 1) * size
        if figures["written"] != wrote:
            raise SystemExit(f"{db}: {figures['written']:.0f} decisions in the log, {wrote} written")
    for (db, size), figures in result.items():
        lines.append(
            f"| {db} | {size} | {figures['client_us']:,.0f} | {figures['server_us']:,.0f} | {figures['group_ms']:.2f} |"
        )
    if len(sizes) >= 2:
        lines.append("")
        small, large = min(sizes), max(sizes)
        for db in options.databases.split(","):
            for key, what in (("client_us", "client CPU"), ("server_us", "database CPU")):
                a, b = result[(db, small)][key] * small, result[(db, large)][key] * large  # µs a group
                per_decision = (b - a) / (large - small)
                lines.append(
                    f"- {db}, {what}: about {a - per_decision * small:,.0f} µs a group + {per_decision:,.0f} a decision"
                )
    text = "\n".join(lines) + "\n"
    print(text)
    if options.report:
        options.report.parent.mkdir(parents=True, exist_ok=True)
        options.report.write_text(text)


if __name__ == "__main__":
    main()
