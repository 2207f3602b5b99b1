"""Where `--cluster` work runs: a Dask LocalCluster of N worker processes on this machine, or an existing
Dask scheduler (`tcp://host:8786`) that multi-host workers are attached to.

`triage train --cluster ...` and `triage score --cluster ...` open the client with `cluster_client` and
close it (and a LocalCluster they started) when done, whatever happens in between.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client

LOCAL = re.compile(r"^local:(\d+)$")
REMOTE = re.compile(r"^(tcp|tls)://[^\s/:]+(:\d+)?$")
MAX_LOCAL_WORKERS = 64
CONNECT_TIMEOUT_S = 30


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed `--cluster` value: `local:N` (N worker processes here) or a scheduler address."""

    workers: int | None  # local:N
    address: str | None  # tcp://host:port or tls://host:port

    @classmethod
    def parse(cls, text: str) -> ClusterSpec:
        value = text.strip()
        local = LOCAL.match(value)
        if local:
            workers = int(local.group(1))
            if not 1 <= workers <= MAX_LOCAL_WORKERS:
                raise ValueError(f"--cluster {text!r}: local:N needs 1 <= N <= {MAX_LOCAL_WORKERS}")
            return cls(workers=workers, address=None)
        if REMOTE.match(value):
            return cls(workers=None, address=value)
        raise ValueError(
            f"--cluster {text!r}: expected local:N (N Dask worker processes on this machine) or the address of "
            "a running Dask scheduler, e.g. tcp://scheduler:8786"
        )

    def describe(self) -> str:
        return f"a local Dask cluster of {self.workers} worker processes" if self.workers else f"Dask at {self.address}"


@contextmanager
def cluster_client(
    spec: ClusterSpec | str, *, memory_limit: str | None = "auto", trim_memory: bool = True
) -> Iterator[Client]:
    """A Dask client for `spec`; a LocalCluster started here is closed on exit.

    Local workers are processes with one thread each (the pipeline's pandas/numpy work holds the GIL;
    LightGBM gets its threads from its own parameters). Ports are left to the OS (`:0`), so parallel
    runs and tests never collide on a fixed port.

    `trim_memory=False` starts local workers without Dask's `MALLOC_TRIM_THRESHOLD_=65536`, which makes
    glibc hand freed memory back to the system at once: scoring, which allocates and frees a partition's
    frames over and over, ran 25% slower per row with it (a 125k-row partition: 50-52k rows/s against
    64-70k). Training keeps it: its memory per worker is the point of running it on the cluster. An
    existing cluster keeps its own settings, and a value set in the environment wins.
    """
    import dask
    from distributed import Client, LocalCluster

    if isinstance(spec, str):
        spec = ClusterSpec.parse(spec)
    if spec.address is not None:
        try:
            client = Client(spec.address, timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise ValueError(f"--cluster {spec.address}: cannot reach the Dask scheduler ({exc})") from exc
        try:
            yield client
        finally:
            client.close()
        return
    environ = {} if trim_memory else {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with dask.config.set(environ):  # read when each worker process is spawned, i.e. here
        cluster = LocalCluster(
            n_workers=spec.workers,
            threads_per_worker=1,
            processes=True,
            scheduler_port=0,
            dashboard_address=None,
            memory_limit=memory_limit,
            silence_logs=logging.ERROR,  # a failing task is reported by the command, not by the workers' log
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()
