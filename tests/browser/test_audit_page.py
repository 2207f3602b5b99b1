"""The /audit page in headless Chromium: a link naming a decision (?decision=...) shows, with an audit key,
why a rule blocked the listing (the rule, the model and policy versions) and the timeline; a score-only
key is refused and the page says it needs the audit scope."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.axe import serious_violations
from tests.browser.conftest import LiveServer
from tests.browser.test_simulator_page import WAIT_SECONDS, _severe_console_errors
from tests.serving.conftest import listing_json

pytestmark = pytest.mark.browser


def _new_key(server: LiveServer, scope: str) -> str:
    body = {"name": f"audit-page-{scope}-{uuid.uuid4().hex[:8]}", "scopes": [scope]}
    created = httpx.post(server.url + "/v1/admin/keys", json=body, headers=_admin(server), timeout=30)
    assert created.status_code == 201, created.text
    return str(created.json()["token"])


def _admin(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_key}"}


@pytest.fixture
def blocked(live_server: LiveServer) -> Iterator[dict[str, Any]]:
    """An auto-block by an enforced block rule on a term no other test uses; the rule is removed afterwards."""
    marker = f"auditpage{uuid.uuid4().hex[:8]}"
    path = f"{live_server.url}/v1/policy/rules/{marker}"
    rule = {"action": "block", "kind": "term", "terms": [marker], "fields": ["title"]}
    put = httpx.put(
        path, json={"rule": rule, "reason": "audit page test", "force": True}, headers=_admin(live_server), timeout=30
    )
    assert put.status_code == 200, put.text
    try:
        listing = listing_json(880_000 + uuid.uuid4().int % 100_000, title=f"Wallet {marker}")
        scored = httpx.post(live_server.url + "/v1/score", json=listing, headers=_admin(live_server), timeout=30)
        assert scored.status_code == 200 and scored.json()["decision"] == "auto_block", scored.text
        yield {"rule": marker, "policy": put.json()["policy"]["version"], **scored.json()}
    finally:
        httpx.delete(path, params={"reason": "audit page test done"}, headers=_admin(live_server), timeout=30)


def _use_key(browser: Any, key: str) -> None:
    browser.find_element(By.ID, "api-key").send_keys(key)
    browser.find_element(By.ID, "key-use").click()


def _state(browser: Any, wanted: str) -> None:
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.execute_script("return document.body.dataset.state") == wanted
    )


def test_the_audit_page_explains_a_linked_decision_and_refuses_a_score_key(
    browser: Any, live_server: LiveServer, blocked: dict[str, Any]
) -> None:
    browser.get(live_server.url + "/audit")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{live_server.url}/audit?decision={blocked['decision_id']}")
    assert browser.find_element(By.ID, "lookup-id").get_attribute("value") == blocked["decision_id"]
    _use_key(browser, _new_key(live_server, "audit"))
    _state(browser, "ready")

    (why,) = browser.find_elements(By.CSS_SELECTOR, ".decision .why")
    assert why.text.startswith(f"Blocked by rule {blocked['rule']} (block rule version 1")
    assert blocked["model_version"] in why.text and blocked["policy"] in why.text
    assert serious_violations(browser) == []
    events = [e.get_attribute("data-event") for e in browser.find_elements(By.CSS_SELECTOR, ".timeline li")]
    assert events[:2] == ["received", "decided"]
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "label[for=lookup-id], label[for=by-listing]")]
    assert labels == ["listing id (every decision of the listing)", "Id"]

    browser.find_element(By.ID, "key-forget").click()
    _use_key(browser, _new_key(live_server, "score"))
    _state(browser, "error")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "needs the audit scope" in error.text
    assert browser.find_elements(By.CSS_SELECTOR, ".decision") == []
    assert all("403" in e for e in _severe_console_errors(browser))  # only the refused request itself


def test_the_pages_write_risks_and_thresholds_as_the_service_does(browser: Any, live_server: LiveServer) -> None:
    """The console and the audit page wrote every risk with three decimals: a pass threshold of 0.00044
    read "auto-pass below 0.000", and 0.99995 read as the block threshold 1.000. They now share the
    service's `in_words` rule (keyform.js `TriageFormat.risk`), checked here value for value."""
    from serving.engine import in_words

    values = [0.0, 0.00044, 0.0004412, 0.0000012, 0.0129, 0.5, 0.98, 0.9999995, 0.99995, 1.0]
    browser.get(live_server.url + "/audit")
    written = browser.execute_script("return arguments[0].map((v) => TriageFormat.risk(v));", values)
    assert written == [in_words(v) for v in values]
    assert browser.execute_script("return TriageFormat.risk(null, '-');") == "-"
