"""The /rules page in headless Chromium: after listings are scored under a shadow rule, its table shows what
`GET /v1/rules/stats` returns, per the period chosen in the labelled select, and the co-occurrence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.conftest import LiveServer, _live
from tests.browser.test_simulator_page import WAIT_SECONDS, _severe_console_errors
from tests.serving.conftest import listing_json

pytestmark = pytest.mark.browser


@pytest.fixture
def own_server(untiered_bundle_dir: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """A service of its own: this test changes the policy, which the session's server must keep."""
    with _live(untiered_bundle_dir, tmp_path) as server:
        yield server


def _score_under_a_shadow_rule(server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    rule = {"action": "block", "kind": "term", "terms": ["replica"], "fields": ["title"], "mode": "shadow"}
    put = httpx.put(server.url + "/v1/policy/rules/page_watch", json={"rule": rule, "reason": "watch"}, headers=headers)
    assert put.status_code == 200, put.text
    items = [listing_json(7000 + i, title="Replica watch" if i % 3 == 0 else f"Wallet {i}") for i in range(30)]
    scored = httpx.post(server.url + "/v1/score/batch", json={"items": items}, headers=headers, timeout=30)
    assert scored.status_code == 200, scored.text


def _shown(driver: Any) -> dict[tuple[str, str], int]:
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#stats tbody tr[data-rule]')]"
        ".map(tr => [tr.dataset.rule, tr.dataset.mode, Number(tr.dataset.hits)])"
    )
    totals: dict[tuple[str, str], int] = {}
    for rule, mode, hits in rows:
        totals[rule, mode] = totals.get((rule, mode), 0) + hits
    return totals


def test_the_rules_page_shows_the_stats_per_period(browser: Any, own_server: LiveServer) -> None:
    _score_under_a_shadow_rule(own_server)
    browser.get(own_server.url + "/rules")
    browser.execute_script("sessionStorage.clear()")
    browser.find_element(By.ID, "api-key").send_keys(own_server.key)
    browser.find_element(By.ID, "key-use").click()
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.execute_script("return document.body.dataset.period") == "all"
    )
    api = own_server.get("/v1/rules/stats", period="all").json()

    expected = {(r["rule"], r["mode"]): r["hits"] for r in api["rules"]}
    assert _shown(browser) == expected and expected["page_watch", "shadow"] >= 10
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "label[for=period], label[for=days]")]
    assert labels == ["Figures per", "over the last (days)"]
    assert "page_watch (shadow)" in browser.find_element(By.ID, "co").text

    Select(browser.find_element(By.ID, "period")).select_by_value("day")
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.execute_script("return document.body.dataset.period") == "day"
    )
    daily = own_server.get("/v1/rules/stats", period="day").json()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#stats tbody tr[data-rule]")) == len(daily["rules"])
    assert _shown(browser) == expected  # the same hits, split by day
    assert _severe_console_errors(browser) == []
