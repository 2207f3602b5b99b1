"""The service as a process: its uvicorn command, its TRIAGE_* environment, a free port, and readiness.

Tests and benchmarks start the service the way production runs it (`uvicorn serving.app:create_app --factory`)
on loopback; they build the command and environment here, start it with `subprocess.Popen` (choosing their
own cwd and log handling), then call `wait_until_up`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"


def service_command(
    port: int, *, workers: int | None = None, access_log: bool = False, log_level: str | None = None
) -> list[str]:
    """`python -m uvicorn serving.app:create_app --factory` on loopback `port` (workers None: uvicorn's default)."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "serving.app:create_app",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    if workers is not None:
        command += ["--workers", str(workers)]
    if not access_log:
        command.append("--no-access-log")
    if log_level is not None:
        command += ["--log-level", log_level]
    return command


def service_env(bundle: Path | str, database_url: str, **settings: str) -> dict[str, str]:
    """os.environ plus TRIAGE_BUNDLE, TRIAGE_DATABASE_URL and one TRIAGE_<NAME> per keyword (log_level="INFO")."""
    return {
        **os.environ,
        "TRIAGE_BUNDLE": str(bundle),
        "TRIAGE_DATABASE_URL": database_url,
        **{f"TRIAGE_{name.upper()}": value for name, value in settings.items()},
    }


def free_port() -> int:
    """A loopback port free right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until_up(
    url: str,
    process: subprocess.Popen[bytes],
    path: str = "/readyz",
    timeout_s: float = 60.0,
    interval_s: float = 0.1,
) -> None:
    """Poll `url + path` until it answers 200; RuntimeError if `process` exits first or `timeout_s` passes.

    The process is left as it is either way: stopping it (and showing its log) is the caller's business.
    """
    import httpx  # here, not at module level: load generators import this module and measure their own CPU

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode} before {path} answered 200")
        try:
            if httpx.get(url + path, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    raise RuntimeError(f"service at {url} not answering {path} within {timeout_s:.0f} s")
