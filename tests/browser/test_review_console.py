"""The /review console in headless Chromium against the live service: a reviewer signs in, claims, reads
the item in words, rejects with a reason (by mouse and by keyboard alone); the verdict, its reason and the
note reach the decision log and the label export; the page has no serious accessibility violation; a key
without the review scope gets nothing.

The live server is shared by every browser test. Nothing else claims from its queue, so each test first
leases whatever other tests left pending to a key of its own (`_only_mine_pending`): the items the page
then claims are the ones the test queued.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from serving.store import Store, create_store
from tests.browser.axe import serious_violations
from tests.browser.conftest import LiveServer
from tests.browser.test_simulator_page import WAIT_SECONDS, _severe_console_errors
from tests.serving.conftest import listing_json

pytestmark = pytest.mark.browser
_ids = itertools.count()
SLEEP_TEA = {"title": "Herbal sleep tea with chamomile and valerian", "description": "Calming evening blend, 40 bags."}


def _admin(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_key}"}


def _key(server: LiveServer, scope: str) -> tuple[str, str]:
    """A new key with one scope: (name, token)."""
    name = f"console-{scope}-{next(_ids)}"
    made = httpx.post(server.url + "/v1/admin/keys", json={"name": name, "scopes": [scope]}, headers=_admin(server))
    assert made.status_code == 201, made.text
    return name, str(made.json()["token"])


def _queue(server: LiveServer, **overrides: Any) -> dict[str, Any]:
    """Score a listing in a regulated category (always human review); its decision."""
    body = listing_json(next(_ids) + 80_000, category="health", **overrides)
    scored = httpx.post(server.url + "/v1/score", json=body, headers=_admin(server), timeout=30)
    assert scored.status_code == 200 and scored.json()["decision"] == "human_review", scored.text
    return dict(scored.json())


def _only_mine_pending(server: LiveServer) -> None:
    _, token = _key(server, "review")
    while httpx.get(server.url + "/v1/queue/next?n=100", headers={"Authorization": f"Bearer {token}"}).json()["items"]:
        pass


@pytest.fixture
def store(live_server: LiveServer) -> Iterator[Store]:
    """The live service's decision log, read beside it."""
    opened = create_store(live_server.database_url, group_commit=False)
    try:
        yield opened
    finally:
        opened.close()


def _sign_in(driver: Any, server: LiveServer, token: str) -> None:
    driver.get(server.url + "/review")
    driver.execute_script("sessionStorage.clear()")
    driver.find_element(By.ID, "api-key").send_keys(token)
    driver.find_element(By.ID, "key-use").click()
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: (
            "Signed in as" in d.find_element(By.ID, "key-status").text
            or "refused" in d.find_element(By.ID, "key-status").text
        )
    )


def _page_state(driver: Any) -> str | None:
    return driver.execute_script("return document.body.dataset.state || null")


def _wait_for(driver: Any, state: str) -> None:
    WebDriverWait(driver, WAIT_SECONDS).until(lambda d: _page_state(d) == state)


def _shown_decision(driver: Any) -> str:
    return str(driver.execute_script("return document.body.dataset.decision"))


def _texts(driver: Any, selector: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def test_a_reviewer_reads_the_item_in_words_and_rejects_it_with_a_reason(
    browser: Any, live_server: LiveServer, store: Store
) -> None:
    _only_mine_pending(live_server)
    original = _queue(live_server, **SLEEP_TEA)
    rejected = {"verdict": "reject", "violation_reason": "misleading_health_claim"}
    url = f"{live_server.url}/v1/reviews/{original['decision_id']}"
    assert httpx.post(url, json=rejected, headers=_admin(live_server)).status_code == 200
    _only_mine_pending(live_server)  # the verdict may draw `original` into a blind second review (5%)
    again = _queue(live_server, **SLEEP_TEA)  # the same product again: the rejected one is a similar case
    name, token = _key(live_server, "review")

    _sign_in(browser, live_server, token)
    browser.find_element(By.ID, "next").click()
    _wait_for(browser, "shown")
    assert _shown_decision(browser) == again["decision_id"]
    context = httpx.get(
        f"{live_server.url}/v1/review/items/{again['decision_id']}", headers={"Authorization": f"Bearer {token}"}
    ).json()["context"]
    feature_names = {r["signal"] for r in context["reasons"]}
    shown_reasons = _texts(browser, "#reasons li")
    assert shown_reasons == [r["words"] for r in context["reasons"]] and shown_reasons
    assert not any(name in text for name in feature_names for text in shown_reasons)
    similar = _texts(browser, "#similar tbody tr")
    assert similar and similar[0].startswith(original["listing_id"] + " reject misleading_health_claim")
    assert any("regulated_category (review): category is one of" in r for r in _texts(browser, "#rules li"))
    assert browser.find_element(By.ID, "lease").text.startswith("Lease: ")

    Select(browser.find_element(By.ID, "reason")).select_by_value("misleading_health_claim")
    assert "Listing policy 4.5" in browser.find_element(By.ID, "excerpt").text
    browser.find_element(By.ID, "note").send_keys("claims to cure insomnia")
    browser.find_element(By.ID, "reject").click()
    _wait_for(browser, "recorded")

    review = store.get_review(again["decision_id"])
    assert review is not None and (review.reviewer, review.verdict, review.violation_reason, review.note) == (
        name,
        "reject",
        "misleading_health_claim",
        "claims to cure insomnia",
    )
    assert review.review_seconds is not None and review.review_seconds >= 0
    labels = store.export_labels().set_index("listing_id")
    assert labels.loc[again["listing_id"], "label"] == 1
    assert labels.loc[again["listing_id"], "violation_reason"] == "misleading_health_claim"
    assert _severe_console_errors(browser) == []


def test_keyboard_only_claim_reject_with_a_reason_and_next(browser: Any, live_server: LiveServer, store: Store) -> None:
    _only_mine_pending(live_server)
    queued = {_queue(live_server)["decision_id"], _queue(live_server)["decision_id"]}
    _, token = _key(live_server, "review")
    _sign_in(browser, live_server, token)
    keys = ActionChains(browser)

    keys.send_keys("n").perform()
    _wait_for(browser, "shown")
    first = _shown_decision(browser)
    keys.send_keys("r").perform()  # no reason yet: the reason list takes the focus
    assert browser.switch_to.active_element.get_attribute("id") == "reason"
    keys.send_keys(Keys.ARROW_DOWN).perform()  # the first reason
    chosen = Select(browser.find_element(By.ID, "reason")).first_selected_option.get_attribute("value")
    keys.send_keys(Keys.ESCAPE).send_keys("r").perform()
    _wait_for(browser, "recorded")
    keys.send_keys("n").perform()
    _wait_for(browser, "shown")
    second = _shown_decision(browser)
    keys.send_keys("l").perform()
    _wait_for(browser, "released")

    assert {first, second} == queued
    review = store.get_review(first)
    assert review is not None and review.verdict == "reject" and review.violation_reason == chosen and chosen
    released = store.get_queue_item(second)
    assert released is not None and released.status == "pending"


def test_the_console_with_an_item_has_no_serious_accessibility_violation(browser: Any, live_server: LiveServer) -> None:
    _only_mine_pending(live_server)
    _queue(live_server)
    _, token = _key(live_server, "review")
    _sign_in(browser, live_server, token)
    browser.find_element(By.ID, "next").click()
    _wait_for(browser, "shown")
    Select(browser.find_element(By.ID, "reason")).select_by_value("counterfeit")  # the excerpt shown too

    assert serious_violations(browser) == []
    browser.find_element(By.ID, "release").click()
    _wait_for(browser, "released")
    browser.execute_script("document.querySelector('main').append(document.createElement('input'))")
    assert "label" in [v["id"] for v in serious_violations(browser)]  # the scan does see a field without label


def test_a_long_url_in_the_listing_wraps_instead_of_widening_the_page(browser: Any, live_server: LiveServer) -> None:
    """Merchants paste URLs and unbroken strings; the title, description and facts wrap within the page."""
    url = "https://example.com/" + "a1b2c3d4" * 60
    _only_mine_pending(live_server)
    _queue(live_server, title=url[:500], description=url * 3, brand="x" * 200)
    _, token = _key(live_server, "review")
    _sign_in(browser, live_server, token)
    size = browser.get_window_size()
    browser.set_window_size(1024, 800)
    try:
        browser.find_element(By.ID, "next").click()
        _wait_for(browser, "shown")

        assert browser.find_element(By.ID, "item-title").text.replace("\n", "") == url[:500]
        too_wide = browser.execute_script(
            "const w = document.documentElement.clientWidth;"
            "return [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > w + 1"
            " || (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible'))"
            ".map((e) => e.id || e.tagName + '.' + e.className);"
        )
        assert too_wide == []
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        browser.find_element(By.ID, "release").click()
        _wait_for(browser, "released")
    finally:
        browser.set_window_size(size["width"], size["height"])


def test_leaving_the_page_gives_the_item_back(browser: Any, live_server: LiveServer, store: Store) -> None:
    _only_mine_pending(live_server)
    _queue(live_server)
    _, token = _key(live_server, "review")
    _sign_in(browser, live_server, token)
    browser.find_element(By.ID, "next").click()
    _wait_for(browser, "shown")
    held = _shown_decision(browser)
    browser.get("about:blank")  # pagehide: the page sends the release (fetch keepalive)

    def status() -> str | None:
        item = store.get_queue_item(held)
        return None if item is None else item.status

    WebDriverWait(browser, WAIT_SECONDS).until(lambda _: status() == "pending")


def test_a_key_without_the_review_scope_gets_nothing(browser: Any, live_server: LiveServer) -> None:
    _, token = _key(live_server, "score")
    api = httpx.get(live_server.url + "/v1/review/next", headers={"Authorization": f"Bearer {token}"})
    _sign_in(browser, live_server, token)
    status = browser.find_element(By.ID, "key-status").text
    browser.find_element(By.ID, "next").click()
    _wait_for(browser, "error")

    assert api.status_code == 403
    assert "lacks the review scope" in status
    assert browser.find_element(By.ID, "error").text.startswith("403: this key cannot use the review console")
    assert not browser.find_element(By.ID, "item").is_displayed()
