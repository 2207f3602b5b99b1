"""Memory over repeated bundle reloads: resident set size after each `POST /v1/admin/reload` of one bundle.

A reload builds a new engine and swaps it in; the old one must be freed. Run:

    python bench/bench_reload_memory.py [--bundle models/latest] [--reloads 20] [--cycle]

Prints one JSON object: RSS (MiB) at start and after each reload, the growth, objects kept by
`gc.freeze()` and whether the replaced engines are still alive (weak references). `--cycle` gives each
engine a reference to itself (as a callback or cache holding the engine would): reference counting
alone can then never free it, only the cyclic collector, which cannot see frozen objects.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import weakref
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient  # noqa: E402

from serving.app import create_app  # noqa: E402
from serving.keys import create_key  # noqa: E402
from serving.settings import Settings  # noqa: E402


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def measure(bundle: Path, reloads: int, cycle: bool) -> dict[str, object]:
    if cycle:
        _give_engines_a_cycle()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(bundle=str(bundle), database_url=f"sqlite:///{tmp}/triage.db", log_level="WARNING")
        app = create_app(settings)
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {create_key(app.state.store, 'bench-admin', 'admin')}"}
            client.post("/v1/admin/reload", headers=headers).raise_for_status()  # warm: first reload's imports
            gc.collect()
            start = rss_mib()
            rss: list[float] = []
            replaced: list[weakref.ref[object]] = []
            replaced_bundles: list[weakref.ref[object]] = []
            for _ in range(reloads):
                replaced.append(weakref.ref(app.state.engine))
                replaced_bundles.append(weakref.ref(app.state.engine.bundle))
                client.post("/v1/admin/reload", headers=headers).raise_for_status()
                rss.append(round(rss_mib(), 1))
            gc.collect()
            return {
                "bundle": str(bundle),
                "engine_in_a_cycle": cycle,
                "reloads": reloads,
                "rss_start_mib": round(start, 1),
                "rss_end_mib": rss[-1],
                "rss_growth_mib": round(rss[-1] - start, 1),
                "rss_growth_per_reload_mib": round((rss[-1] - start) / reloads, 2),
                "rss_after_each_reload_mib": rss,
                "frozen_objects": gc.get_freeze_count(),
                "replaced_engines_alive": sum(ref() is not None for ref in replaced),
                "replaced_bundles_alive": sum(ref() is not None for ref in replaced_bundles),
            }


def _give_engines_a_cycle() -> None:
    from serving.engine import DecisionEngine

    from_bundle = DecisionEngine.from_bundle.__func__  # type: ignore[attr-defined]

    def with_cycle(cls: type[DecisionEngine], *args: object, **kwargs: object) -> DecisionEngine:
        engine = from_bundle(cls, *args, **kwargs)
        engine.__dict__["_self"] = engine
        return engine

    DecisionEngine.from_bundle = classmethod(with_cycle)  # type: ignore[assignment,method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="bundle directory (default: the bench model)")
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--cycle", action="store_true", help="give each engine a reference cycle")
    args = parser.parse_args()
    if args.bundle is None:
        from bench.common import prepare

        args.bundle = prepare().bundle
    print(json.dumps(measure(args.bundle, args.reloads, args.cycle), indent=2))


if __name__ == "__main__":
    main()
