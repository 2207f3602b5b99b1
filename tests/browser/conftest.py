"""A real uvicorn on a free loopback port (session bundle, temp SQLite, one API key) and headless Chromium.

Chromium and its driver come from Debian (`apt-get install -y chromium chromium-driver`); Selenium is
given both paths, so Selenium Manager never runs and nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from serving.process import free_port, service_command, service_env, wait_until_up

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

CHROMIUM = Path(os.environ.get("TRIAGE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TRIAGE_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
]
STARTUP_SECONDS = 60


@dataclass(frozen=True)
class LiveServer:
    url: str
    key: str  # scope "score": the simulator works with any valid key, applying needs admin
    admin_key: str
    database_url: str  # the service's decision log, for tests that read what it stored

    def get(self, path: str, **params: str | int | float | bool | None) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers={"Authorization": f"Bearer {self.key}"})


def _create_keys(database_url: str) -> tuple[str, str]:
    """A key with the score scope and one with admin."""
    from serving.keys import create_key
    from serving.store import create_store

    store = create_store(database_url)
    try:
        store.init_schema()
        return create_key(store, "browser-tests", "read"), create_key(store, "browser-admin", "admin")
    finally:
        store.close()


@contextmanager
def _live(bundle: Path, workdir: Path) -> Iterator[LiveServer]:
    """uvicorn serving `bundle` with a fresh SQLite store and two keys, until the block ends."""
    database_url = f"sqlite:///{workdir / 'service.db'}"
    key, admin_key = _create_keys(database_url)
    port = free_port()
    env = service_env(bundle, database_url, log_level="WARNING")
    log = (workdir / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        service_command(port, workers=1, access_log=True), env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, timeout_s=STARTUP_SECONDS, interval_s=0.2)
        yield LiveServer(url, key, admin_key, database_url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def live_server(untiered_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service on an untiered copy of the session bundle (one recall target; tests/conftest.py)."""
    with _live(untiered_bundle_dir, tmp_path_factory.mktemp("live")) as server:
        yield server


@pytest.fixture(scope="session")
def tiered_live_server(tiered_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The same service on the tiered copy of the session bundle (tests/conftest.py)."""
    with _live(tiered_bundle_dir, tmp_path_factory.mktemp("live-tiered")) as server:
        yield server


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chrome]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            raise RuntimeError(f"{path} missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def _page_state_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts from a clean tab: after a test that used the shared browser, forget the keys its
    page kept (sessionStorage), leave the page (a console page gives its lease back) and drain the console
    log, so one test's key or console messages never reach the next."""
    yield
    if "browser" not in request.fixturenames:
        return
    driver = request.getfixturevalue("browser")
    with contextlib.suppress(Exception):  # a page that never loaded has nothing to clear
        if driver.current_url.startswith("http"):
            driver.execute_script("window.sessionStorage.clear(); window.localStorage.clear();")
        driver.get("about:blank")
        driver.get_log("browser")
