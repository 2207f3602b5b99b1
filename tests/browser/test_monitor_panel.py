"""The simulator page's production panel in headless Chromium: after listings are scored and reviewed through
the API, the panel shows exactly what `GET /v1/monitor` returns, beside the simulator's expectation."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.test_simulator_page import REPO, WAIT_SECONDS, _open_with_key, _severe_console_errors
from tests.serving.conftest import listing_json

pytestmark = pytest.mark.browser


def _score_and_review(server, n: int = 40) -> None:
    """Score n listings with the admin key (admin implies score and review) and reject every other queued one."""
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    items = [listing_json(9000 + i, price=5.0 + 40 * (i % 5), title=f"Wallet {i}") for i in range(n)]
    scored = httpx.post(server.url + "/v1/score/batch", json={"items": items}, headers=headers, timeout=30)
    assert scored.status_code == 200, scored.text
    queued = [r["decision_id"] for r in scored.json()["items"] if r["decision"] == "human_review"]
    for i, decision_id in enumerate(queued):
        verdict = {"verdict": "reject", "violation_reason": "counterfeit"} if i % 2 else {"verdict": "approve"}
        assert httpx.post(f"{server.url}/v1/reviews/{decision_id}", json=verdict, headers=headers).status_code == 200


def _monitor_ready(driver) -> bool:
    return driver.execute_script("return document.body.dataset.monitor") == "ready"


def _panel(driver) -> dict[str, list[float | None]]:
    raw = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#monitor-table tbody tr')].map(tr => "
        "[tr.dataset.key, [tr.cells[1].dataset.value ?? null, tr.cells[3].dataset.value ?? null, "
        "tr.cells[4].dataset.value ?? null]]))"
    )
    return {key: [None if v is None else float(v) for v in values] for key, values in raw.items()}


def test_panel_shows_the_monitor_estimates_beside_the_simulation(browser, live_server) -> None:
    _score_and_review(live_server)
    _open_with_key(browser, live_server)
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.execute_script("return document.body.dataset.monitor") == "ready"
    )
    monitor = live_server.get("/v1/monitor", hours=24).json()
    shown = _panel(browser)
    simulated = {
        "miss_rate": monitor["expected"]["miss_rate"],
        "recall": monitor["expected"]["recall"]["value"],
        "block_precision": monitor["expected"]["block_precision"]["value"],
        "queue_share": monitor["expected"]["queue_share"]["value"],
        "violation_rate": None,
    }
    for key, (estimate, verdicts, expected) in shown.items():
        assert estimate == monitor["estimates"][key]["estimate"], key
        assert verdicts == monitor["estimates"][key]["n_labelled"], key
        assert expected == pytest.approx(simulated[key]) if simulated[key] is not None else expected is None, key
    assert monitor["labels"]["decisions"] >= 40
    assert f"{monitor['labels']['decisions']:,} decisions" in browser.find_element(By.ID, "monitor-summary").text
    status = browser.find_element(By.ID, "monitor-status")
    assert status.text == monitor["drift"]["status"].upper()
    drift_items = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#monitor-drift li")]
    assert drift_items[0] == f"Reference: {monitor['drift']['reference']}."
    assert any(item.startswith("Risk distribution: PSI") for item in drift_items)
    Select(browser.find_element(By.ID, "monitor-hours")).select_by_value("168")  # another window reloads it
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.execute_script("return document.body.dataset.monitor") == "ready"
    )
    assert _severe_console_errors(browser) == []
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    assert browser.find_element(By.ID, "monitor").screenshot(str(out / "monitor_panel.png"))
