"""A real uvicorn process killed with SIGKILL mid-load loses no acknowledged decision."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from serving.keys import create_key
from serving.process import free_port, service_command, service_env, wait_until_up
from serving.store import create_store
from tests.serving.conftest import listing_json

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.reliability


def start_server(bundle: Path, database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = service_env(bundle, database_url, log_level="WARNING")
    command = service_command(port)
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server)
    except RuntimeError:
        server.kill()
        raise
    return server


def test_sigkill_mid_load_loses_no_acknowledged_decision(bundle_dir: Path, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'log.db'}"
    with create_store(database_url) as store:
        store.init_schema()
        token = create_key(store, "loader", "score")
    port = free_port()
    server = start_server(bundle_dir, database_url, port)
    acknowledged: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5) as client:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    if n % 4:
                        response = client.post("/v1/score", json=listing_json(worker * 100_000 + n))
                        ids = [response.json()["decision_id"]] if response.status_code == 200 else []
                    else:
                        items = [listing_json(worker * 100_000 + n * 10 + k) for k in range(5)]
                        response = client.post("/v1/score/batch", json={"items": items})
                        ids = (
                            [i["decision_id"] for i in response.json()["items"]] if response.status_code == 200 else []
                        )
                except (httpx.TransportError, ValueError):
                    return  # the server is gone: this request was never acknowledged
                if response.status_code != 200:
                    errors.append(response.text)
                acknowledged.extend(ids)

    threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    try:
        while len(acknowledged) < 300:
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    finally:
        stop.set()
        server.kill()
        for thread in threads:
            thread.join(timeout=10)

    assert not errors
    with create_store(database_url) as store:
        missing = [d for d in acknowledged if store.get_decision(d) is None]
        logged = store.count_decisions()
    assert len(acknowledged) >= 300 and missing == []
    assert logged >= len(set(acknowledged))
