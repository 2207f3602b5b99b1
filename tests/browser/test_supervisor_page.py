"""The /supervisor page in headless Chromium: with a supervise key it shows the queue per lane and each
reviewer's and team's throughput and agreement on blind second reviews, as the API reports them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.axe import serious_violations
from tests.browser.conftest import LiveServer, _live
from tests.browser.test_simulator_page import WAIT_SECONDS, _severe_console_errors
from tests.serving.conftest import listing_json

pytestmark = pytest.mark.browser


@pytest.fixture
def own_server(untiered_bundle_dir: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """A service of its own: this test sends every verdict to a second review, a policy the shared
    server must not get."""
    with _live(untiered_bundle_dir, tmp_path) as server:
        yield server


def _key(server: LiveServer, name: str, scope: str, team: str | None = None) -> dict[str, str]:
    body = {"name": name, "scopes": [scope], "team": team}
    response = httpx.post(server.url + "/v1/admin/keys", json=body, headers=_bearer(server.admin_key))
    assert response.status_code == 201, response.text
    return _bearer(response.json()["token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _review_all(server: LiveServer, headers: dict[str, str], verdicts: list[str]) -> None:
    items = httpx.get(server.url + "/v1/queue/next", params={"n": len(verdicts)}, headers=headers).json()["items"]
    assert len(items) == len(verdicts)
    for item, verdict in zip(items, verdicts, strict=True):
        body = {"verdict": verdict, "review_seconds": 30} | (
            {"violation_reason": "other"} if verdict == "reject" else {}
        )
        response = httpx.post(f"{server.url}/v1/reviews/{item['decision_id']}", json=body, headers=headers)
        assert response.status_code == 200, response.text


def test_the_supervisor_page_shows_lanes_throughput_and_agreement(browser: Any, own_server: LiveServer) -> None:
    admin = _bearer(own_server.admin_key)
    plan = {"quality": {"second_review_rate": 1.0, "gold_rate": 0.0}, "reason": "second-review every verdict"}
    assert httpx.put(own_server.url + "/v1/policy", json=plan, headers=admin).status_code == 200
    alice, bob = _key(own_server, "alice", "review", "vendor-a"), _key(own_server, "bob", "review", "vendor-a")
    lead = _key(own_server, "lead", "supervise")
    items = [listing_json(8000 + i, category="health") for i in range(3)]
    scored = httpx.post(own_server.url + "/v1/score/batch", json={"items": items}, headers=admin, timeout=30)
    assert [i["decision"] for i in scored.json()["items"]] == ["human_review"] * 3
    _review_all(own_server, alice, ["reject", "reject", "approve"])
    _review_all(own_server, bob, ["reject", "approve"])  # one second review left waiting

    browser.get(own_server.url + "/supervisor")
    browser.execute_script("sessionStorage.clear()")
    browser.find_element(By.ID, "api-key").send_keys(lead["Authorization"].removeprefix("Bearer "))
    browser.find_element(By.ID, "key-use").click()
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.execute_script("return document.body.dataset.state") == "ready"
    )

    queue = httpx.get(own_server.url + "/v1/queue/stats", headers=lead).json()
    pending = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#lanes tbody tr')]"
        ".map(tr => [tr.dataset.lane, Number(tr.dataset.pending)]))"
    )
    assert pending == {lane: counts["pending"] for lane, counts in queue["lanes"].items()}
    assert pending["second"] == 1
    rows = {
        row.get_attribute("data-reviewer"): [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#quality tbody tr")
    }
    assert set(rows) == {"alice", "bob", "team vendor-a"}
    assert rows["alice"][1:6] == ["vendor-a", "3", "3", "3", "66.7%"]  # last hour, day, window, reject rate
    assert rows["alice"][9].startswith("50.0% [") and rows["alice"][9].endswith("of 2")
    assert rows["team vendor-a"][4] == "5"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=days]").text == "Verdicts of the last (days)"
    assert _severe_console_errors(browser) == []
    assert serious_violations(browser) == []
