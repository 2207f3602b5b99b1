"""Serving: this service against `mlflow models serve` of the same model, with a FastAPI echo as the ceiling.

    python bench/bench_serving.py [--rounds 3] [--quick]

Servers (one uvicorn worker each, all started once, all on loopback):
- this service: `serving.app:create_app`, decision log on (SQLite, WAL, group commit), as `triage serve` runs it;
- MLflow without a signature: `mlflow models serve -m models:/listing-risk/<v> --env-manager local`, JSON `inputs`;
- MLflow with a signature: a second copy of the same bundle logged with an input example, `dataframe_split`;
- echo: FastAPI answering the request body with itself (bench/echo_app.py), the ceiling for Python HTTP here.

Scenarios: one listing per request at concurrency 1 and 32, and a batch of 1,000 listings per request.
The load generator (bench/loadgen.py) runs in its own process; every run is bounded in requests and seconds.
Each round runs every (server, scenario) once, servers in rotating order; figures are medians over rounds.
Every response of this service is checked to carry a model score (no fallback), every MLflow response a
decision per listing, so a fast error path cannot pass for throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    BIN,
    LISTING_COLUMNS,
    PYTHON,
    ROOT,
    Prepared,
    Server,
    log,
    median,
    prepare,
    run_load,
)
from serving.process import free_port, service_command  # noqa: E402

SIGNED_MODEL = "listing-risk-signed"
SCORED_MARK = '"fallback_reason":null'  # one per listing that the model really scored
MLFLOW_MARK = '"decision":'  # one per listing in an MLflow prediction


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    batch: int
    max_requests: int
    max_seconds: float
    warmup: int


SCENARIOS = [
    Scenario("single_c1", 1, 1, 3000, 4.0, 30),
    Scenario("single_c32", 32, 1, 30000, 5.0, 64),
    Scenario("batch1000_c1", 1, 1000, 40, 6.0, 2),
]


def listings_sample(data: Path, n: int) -> list[dict[str, Any]]:
    """n listings in the service's JSON shape: tenure in whole days, timestamps ISO 8601 without offset
    (UTC to the service; MLflow's datetime schema refuses timezone-aware values)."""
    frame = pd.read_parquet(data, columns=LISTING_COLUMNS).tail(n).reset_index(drop=True)
    frame["merchant_tenure_days"] = frame["merchant_tenure_days"].round().astype("int64")
    frame["created_at"] = frame["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return frame.to_dict(orient="records")


def split_body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"dataframe_split": {"columns": LISTING_COLUMNS, "data": [[r[c] for c in LISTING_COLUMNS] for r in rows]}}


def inputs_body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inputs": {c: [r[c] for r in rows] for c in LISTING_COLUMNS}}


def write_bodies(workdir: Path, listings: list[dict[str, Any]]) -> dict[tuple[str, str], Path]:
    """Request bodies per (server, scenario kind), written once as JSON lists for the load generator."""
    batches = [listings[i : i + 1000] for i in range(0, 3000, 1000)]
    singles = listings[:1000]
    shapes = {
        "ours": (singles, [{"items": b} for b in batches]),
        "echo": (singles, [{"items": b} for b in batches]),
        "mlflow_inputs": ([inputs_body([r]) for r in singles], [inputs_body(b) for b in batches]),
        "mlflow_split": ([split_body([r]) for r in singles], [split_body(b) for b in batches]),
    }
    out = {}
    for server, (single, batch) in shapes.items():
        for kind, bodies in (("single", single), ("batch", batch)):
            path = workdir / f"bodies-{server}-{kind}.json"
            path.write_text(json.dumps(bodies))
            out[(server, kind)] = path
    return out


def signed_model_version(prepared: Prepared, example: pd.DataFrame) -> str:
    """Log the same bundle again as a pyfunc with a signature inferred from an input example; cached."""
    marker = prepared.workdir / "signed.json"
    if marker.exists():
        return str(json.loads(marker.read_text())["version"])
    import mlflow
    from mlflow.models import infer_signature

    from bundle.load import Bundle
    from training.pyfunc import BUNDLE_ARTIFACT, BundleModel

    # Inferred from the example and the model's own output; an instance that has loaded its bundle holds an
    # ONNX session and cannot be pickled, so a separate one computes the output.
    probe = BundleModel()
    probe.bundle = Bundle.load(prepared.bundle)
    signature = infer_signature(example, probe.predict(None, example))
    previous = Path.cwd()
    os.chdir(prepared.workdir)  # the experiment's ./mlruns artifact store lives here
    try:
        mlflow.set_tracking_uri(prepared.tracking_uri)
        mlflow.set_experiment("listing-triage")
        with mlflow.start_run(run_name="bench-signed-copy"):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=BundleModel(),
                artifacts={BUNDLE_ARTIFACT: str(prepared.bundle)},
                code_paths=[str(ROOT / "features"), str(ROOT / "training")],
                signature=signature,
                registered_model_name=SIGNED_MODEL,
            )
    finally:
        os.chdir(previous)
    if info.signature is None:
        raise RuntimeError("the signed copy has no signature")
    version = str(info.registered_model_version)
    marker.write_text(json.dumps({"version": version, "signature": str(info.signature)}))
    return version


def _make_key(db_url: str) -> str:
    from serving.keys import create_key
    from serving.store import create_store

    store = create_store(db_url, group_commit=False)
    try:
        store.init_schema()
        return create_key(store, "bench", ["score"])
    finally:
        store.close()


def servers(prepared: Prepared, signed_version: str, db_path: Path) -> dict[str, Server]:
    # `mlflow models serve` execs `uvicorn` from PATH: the venv's, as an activated venv would provide
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    mlflow_env = {"MLFLOW_TRACKING_URI": prepared.tracking_uri, "PATH": path}
    ports = {name: free_port() for name in ("ours", "mlflow_inputs", "mlflow_split", "echo")}

    def mlflow_cmd(uri: str, port: int) -> list[str]:
        return [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]

    return {
        "ours": Server(
            "ours",
            service_command(ports["ours"]),
            ports["ours"],
            "/readyz",
            env={"TRIAGE_BUNDLE": str(prepared.bundle), "TRIAGE_DATABASE_URL": f"sqlite:///{db_path}"},
        ),
        "mlflow_inputs": Server(
            "mlflow_inputs",
            mlflow_cmd(f"models:/listing-risk/{prepared.model_version}", ports["mlflow_inputs"]),
            ports["mlflow_inputs"],
            "/ping",
            env=mlflow_env,
            cwd=prepared.workdir,
        ),
        "mlflow_split": Server(
            "mlflow_split",
            mlflow_cmd(f"models:/{SIGNED_MODEL}/{signed_version}", ports["mlflow_split"]),
            ports["mlflow_split"],
            "/ping",
            env=mlflow_env,
            cwd=prepared.workdir,
        ),
        "echo": Server(
            "echo",
            [
                PYTHON,
                "-m",
                "uvicorn",
                "echo_app:app",
                "--app-dir",
                str(ROOT / "bench"),
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["echo"]),
                "--no-access-log",
            ],
            ports["echo"],
            "/healthz",
        ),
    }


PATHS = {
    "ours": ("/v1/score", "/v1/score/batch"),
    "echo": ("/echo", "/echo"),
    "mlflow_inputs": ("/invocations", "/invocations"),
    "mlflow_split": ("/invocations", "/invocations"),
}
MARKS = {"ours": SCORED_MARK, "mlflow_inputs": MLFLOW_MARK, "mlflow_split": MLFLOW_MARK}


def one_run(
    server: str, port: int, scenario: Scenario, bodies: dict[tuple[str, str], Path], headers: list[str]
) -> dict[str, Any]:
    kind = "single" if scenario.batch == 1 else "batch"
    path = PATHS[server][0 if kind == "single" else 1]
    mark = MARKS.get(server)
    result = run_load(
        port,
        path,
        bodies[(server, kind)],
        scenario.concurrency,
        scenario.max_requests,
        scenario.max_seconds,
        scenario.warmup,
        headers if server == "ours" else (),
        [mark] if mark else (),
    )
    bad = result["requests"] - result["ok"] + sum(result["errors"].values())
    if bad:
        raise RuntimeError(
            f"{server} {scenario.name}: {bad} failed requests: {result['statuses']} "
            f"{result['errors']} {result['samples']}"
        )
    items = result["ok"] * scenario.batch
    scored = result["counts"][mark] if mark else items
    if server.startswith("mlflow") and scored != items:
        raise RuntimeError(f"{server} {scenario.name}: {scored} predictions for {items} listings: {result['samples']}")
    # This service answers an item it could not score in time with human_review (fail safe); such items
    # count as acknowledged but not as throughput.
    result["fallback_items"] = items - scored
    result["items_per_second"] = scored / result["seconds"]
    return result


def measure(rounds: int, scenarios: list[Scenario], with_echo: bool = True) -> dict[str, Any]:
    prepared = prepare()
    listings = listings_sample(prepared.data, 3000)
    example = pd.DataFrame(listings[:5])
    example["created_at"] = pd.to_datetime(example["created_at"], utc=True).dt.tz_localize(None)
    signed_version = signed_model_version(prepared, example)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        workdir = Path(tmp)
        bodies = write_bodies(workdir, listings)
        db_path = workdir / "decisions.db"
        headers = [f"Authorization: Bearer {_make_key(f'sqlite:///{db_path}')}"]
        procs = servers(prepared, signed_version, db_path)
        if not with_echo:
            procs.pop("echo")
        started: list[Server] = []
        try:
            for server in procs.values():
                log(f"starting {server.name} on port {server.port}")
                server.start()
                started.append(server)
            raw: dict[str, dict[str, list[dict[str, Any]]]] = {name: {s.name: [] for s in scenarios} for name in procs}
            names = list(procs)
            for r in range(rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for scenario in scenarios:
                    for name in order:
                        if name == "echo" and scenario.batch != 1:
                            continue
                        result = one_run(name, procs[name].port, scenario, bodies, headers)
                        raw[name][scenario.name].append(result)
                        log(
                            f"round {r + 1}/{rounds} {scenario.name:>13} {name:>13}: "
                            f"{result['items_per_second']:>9,.0f} items/s  p50 {result['p50_ms']:.2f} ms  "
                            f"p99 {result['p99_ms']:.2f} ms  ({result['requests']} requests, "
                            f"{result['fallback_items']} fallback items)"
                        )
            decisions_logged = _count_decisions(db_path)
        finally:
            for server in reversed(started):
                server.stop()
    return {
        "raw": raw,
        "decisions_logged": decisions_logged,
        "signed_version": signed_version,
        "model_version": prepared.model_version,
    }


def _count_decisions(db_path: Path) -> int:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])


def summarise(measured: dict[str, Any], rounds: int) -> list[dict[str, Any]]:
    """Medians over rounds -> figures (ours against the faster MLflow variant, and against echo)."""
    raw = measured["raw"]
    med = {
        server: {
            scenario: {k: median([r[k] for r in runs]) for k in ("items_per_second", "p50_ms", "p99_ms")}
            for scenario, runs in by_scenario.items()
            if runs
        }
        for server, by_scenario in raw.items()
    }
    command = f"python bench/bench_serving.py --rounds {rounds}"
    figures: list[dict[str, Any]] = []
    labels = {
        "single_c1": "1 listing/request, concurrency 1",
        "single_c32": "1 listing/request, concurrency 32",
        "batch1000_c1": "batch of 1,000 listings/request",
    }
    for scenario in med["ours"]:
        fastest = max(("mlflow_inputs", "mlflow_split"), key=lambda s: med[s][scenario]["items_per_second"])
        variant = {"mlflow_inputs": "no signature, `inputs`", "mlflow_split": "signature, `dataframe_split`"}
        base_name = f"mlflow models serve ({variant[fastest]}; the faster variant)"
        ours, base = med["ours"][scenario], med[fastest][scenario]
        runs = raw["ours"][scenario]
        fallback = sum(r["fallback_items"] for r in runs)
        acknowledged = sum(r["ok"] for r in runs) * (1000 if scenario.startswith("batch") else 1)
        group = "serving vs MLflow"
        figures += [
            {
                "group": group,
                "figure": f"{labels[scenario]}: throughput",
                "unit": "listings/s",
                "ours": ours["items_per_second"],
                "baseline": base["items_per_second"],
                "baseline_name": base_name,
                "higher_is_better": True,
                "command": command,
                "target": ">= 3x MLflow",
                "note": f"model-scored listings only; {fallback} of {acknowledged} acknowledged decisions over all "
                "rounds fell back to human_review (scoring budget exceeded)"
                if fallback
                else None,
            },
            {
                "group": group,
                "figure": f"{labels[scenario]}: p50 latency",
                "unit": "ms",
                "ours": ours["p50_ms"],
                "baseline": base["p50_ms"],
                "baseline_name": base_name,
                "higher_is_better": False,
                "command": command,
            },
            {
                "group": group,
                "figure": f"{labels[scenario]}: p99 latency",
                "unit": "ms",
                "ours": ours["p99_ms"],
                "baseline": base["p99_ms"],
                "baseline_name": base_name,
                "higher_is_better": False,
                "command": command,
                "target": "lower than MLflow",
            },
        ]
        for other in ("mlflow_inputs", "mlflow_split"):
            if other != fastest:
                slow = med[other][scenario]
                figures.append(
                    {
                        "group": group,
                        "figure": f"{labels[scenario]}: throughput (other MLflow variant)",
                        "unit": "listings/s",
                        "ours": ours["items_per_second"],
                        "baseline": slow["items_per_second"],
                        "baseline_name": f"mlflow models serve ({variant[other]})",
                        "higher_is_better": True,
                        "command": command,
                    }
                )
    if "echo" in med:
        for scenario in ("single_c1", "single_c32"):
            if scenario in med["echo"]:
                figures.append(
                    {
                        "group": "serving vs Python HTTP ceiling",
                        "figure": f"{labels[scenario]}: throughput",
                        "unit": "requests/s",
                        "ours": med["ours"][scenario]["items_per_second"],
                        "baseline": med["echo"][scenario]["items_per_second"],
                        "baseline_name": "FastAPI echo on uvicorn (same body)",
                        "higher_is_better": True,
                        "command": command,
                        "target": ">= 0.5 of the ceiling",
                    }
                )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    measured = measure(args.rounds, SCENARIOS)
    figures = summarise(measured, args.rounds)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
