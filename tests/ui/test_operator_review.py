"""What an operator's review of the admin UI asked for, in a real browser against the real
gateway: a failed save brings its error into view, creating a key cannot be repeated by
a reload while its value is still shown once."""

from __future__ import annotations

import re
from typing import Any

import openai
import pytest

from tests.api.support import admin
from tests.support.gateway import RunningGateway
from tests.ui.conftest import PHONE, log_in, screenshot
from tollway.ui import present

KEYS = "/api/governance/virtual-keys"


def keys_named(gateway: RunningGateway, name: str) -> list[dict[str, Any]]:
    with admin(gateway) as api:
        listed = api.get(KEYS, params={"search": name, "limit": 1000}).json()["virtual_keys"]
    return [key for key in listed if key["name"] == name]


def in_view(page: Any, selector: str) -> bool:
    """Whether the element's top edge is inside the viewport."""
    return bool(page.evaluate(
        "s => { const r = document.querySelector(s).getBoundingClientRect();"
        " return r.top >= -1 && r.top < window.innerHeight; }", selector))


def test_a_reload_after_creating_a_key_creates_no_second_key(page: Any, gateway: RunningGateway) -> None:
    log_in(page)
    page.goto("/ui/keys/new")
    page.fill("input[name=name]", "reloaded key")
    page.fill("input[name=id]", "vk-reloaded")
    page.click("button:has-text('Create key')")
    page.wait_for_url("**/ui/keys/vk-reloaded/created")  # POST/redirect/GET
    value = page.input_value("#key-value")
    assert value.startswith("tw-")
    screenshot(page, "key-created")

    page.reload()  # a GET now: nothing is posted again
    page.wait_for_url("**/ui/keys/vk-reloaded")
    assert "shown once, when it was created, and cannot be shown again" in page.inner_text(".flash")
    assert value not in page.content()
    page.goto("/ui/keys/vk-reloaded/created")  # back to it by hand, or with the Back button
    page.wait_for_url("**/ui/keys/vk-reloaded")
    assert value not in page.content()
    assert [key["id"] for key in keys_named(gateway, "reloaded key")] == ["vk-reloaded"]


def test_the_value_page_needs_the_creating_session(page: Any, browser: Any, gateway: RunningGateway) -> None:
    log_in(page)
    page.goto("/ui/keys/new")
    page.fill("input[name=name]", "private key")
    page.fill("input[name=id]", "vk-private")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/ui/keys")) as posted:
        page.click("button:has-text('Create key')")
    page.wait_for_url("**/ui/keys/vk-private/created")
    set_cookies = [c for c in posted.value.header_values("set-cookie") if c.startswith("tollway_ui_new_key=")]
    [cookie] = set_cookies
    assert "httponly" in cookie.lower() and "max-age" not in cookie.lower()  # a browser-session cookie
    sealed = cookie.split(";")[0].split("=", 1)[1]
    value = page.input_value("#key-value")

    other = browser.new_context(base_url=gateway.url)
    try:
        tab = other.new_page()
        log_in(tab)
        # Another session replaying the sealed value: it is bound to the session that created the key.
        other.add_cookies([{"name": "tollway_ui_new_key", "value": sealed, "url": gateway.url + "/ui/keys"}])
        tab.goto("/ui/keys/vk-private/created")
        tab.wait_for_url("**/ui/keys/vk-private")
        assert "cannot be shown again" in tab.inner_text(".flash") and value not in tab.content()
    finally:
        other.close()


def test_a_failed_save_brings_the_error_and_its_field_into_view(page: Any, gateway: RunningGateway) -> None:
    with admin(gateway) as api:
        assert api.post(KEYS, json={"id": "vk-far-down", "name": "far down"}).status_code == 201
    page.set_viewport_size({"width": 1280, "height": 600})
    log_in(page)
    page.goto("/ui/keys/vk-far-down")
    page.fill("#limits input[name=budget_max_limit]", "-5")
    page.fill("#limits input[name=budget_reset_duration]", "1d")
    page.click("#limits button:has-text('Save limits')")
    page.wait_for_selector("#limits .problem")
    page.wait_for_load_state()  # the page's script has run
    assert in_view(page, "#limits .problem"), "the error is below the fold"
    assert page.evaluate("window.scrollY") > 0  # it was further down: the page moved to it
    assert page.evaluate("document.activeElement.name") == "budget_max_limit"
    assert page.evaluate("document.activeElement.closest('form').id") == "limits"
    screenshot(page, "failed-save-in-view")

    page.goto("/ui/keys/new")  # a form at the top: the error and the field it names
    page.fill("input[name=name]", "bad")
    page.fill("input[name=request_max_limit]", "many")
    page.fill("input[name=request_reset_duration]", "1m")
    page.click("button:has-text('Create key')")
    page.wait_for_selector(".problem")
    page.wait_for_load_state()
    assert in_view(page, ".problem")
    assert page.evaluate("document.activeElement.name") == "request_max_limit"


def chat(gateway: RunningGateway, key: str, model: str = "openai/gpt-4o-mini") -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=10)
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])


def make_key(gateway: RunningGateway, key_id: str, name: str, **extra: Any) -> str:
    with admin(gateway) as api:
        answer = api.post(KEYS, json={"id": key_id, "name": name, **extra})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["virtual_key"]["value"])


def test_request_log_filters_by_name_and_shows_each_request_in_detail(page: Any, gateway: RunningGateway) -> None:
    value = make_key(gateway, "vk-logged", "logged key", rate_limit={"request_max_limit": 2, "request_reset_duration": "1h"})
    gone = make_key(gateway, "vk-gone", "gone key")
    chat(gateway, value)
    chat(gateway, value)
    with pytest.raises(openai.RateLimitError):
        chat(gateway, value)
    chat(gateway, gone)
    with admin(gateway) as api:
        assert api.delete(f"{KEYS}/vk-gone").status_code == 200
    log_in(page)

    page.goto("/ui/logs?virtual_key_id=logged+key")  # a name, not an id
    assert page.locator("table.log tbody tr:not(.why)").count() == 3
    page.goto("/ui/logs?model=openai/gpt-4o-mini&virtual_key_id=vk-logged&decision=request_limited")
    assert page.locator("table.log tbody tr:not(.why)").count() == 1
    page.click("table.log tbody tr:not(.why) td:first-child a")
    page.wait_for_url(re.compile(r".*/ui/logs/\d+$"))
    denial = page.inner_text("#denial")
    assert "virtual key logged key" in denial and "allows 2 requests per 1h" in denial, denial
    facts = page.inner_text("dl.facts")
    for label in ("Request id", "Prompt tokens", "Completion tokens", "Cost", "Latency"):
        assert label.upper() in facts.upper(), label
    assert page.inner_text("[data-field=cost]") == "$0.00"
    assert re.fullmatch(r"\d[\d,]*(\.\d)? ms", page.inner_text("[data-field=latency]"))
    screenshot(page, "log-entry")

    page.goto("/ui/logs?virtual_key_id=vk-gone")  # a deleted key: shown as deleted, not as a broken link
    row = page.locator("table.log tbody tr:not(.why)").first
    assert "deleted" in row.inner_text() and row.locator("a[href*='/ui/keys/']").count() == 0
    page.click("table.log tbody tr:not(.why) td:first-child a")
    assert "deleted" in page.inner_text("dl.facts")

    page.goto("/ui/logs?virtual_key_id=nobody+at+all")
    assert "no virtual key has the id or name 'nobody at all'" in page.inner_text(".problem")
    assert page.get_attribute("input[name=virtual_key_id]", "aria-invalid") == "true"
    page.goto("/ui/logs/999999")
    assert "request-log entry '999999' not found" in page.inner_text(".problem")


def test_the_audit_log_lists_changes_and_marks_deleted_entities(page: Any, gateway: RunningGateway) -> None:
    make_key(gateway, "vk-audited", "audited key", budget={"max_limit": 5, "reset_duration": "1d"})
    make_key(gateway, "vk-audit-gone", "soon gone")
    with admin(gateway) as api:
        assert api.put(f"{KEYS}/vk-audited", json={"budget": {"max_limit": 7.5}}).status_code == 200
        assert api.delete(f"{KEYS}/vk-audit-gone").status_code == 200
    log_in(page)
    page.click("nav a:has-text('Audit log')")
    page.wait_for_url("**/ui/audit")
    page.goto("/ui/audit?entity_id=vk-audited&action=update")
    [row] = page.locator("table.audit tbody tr").all()
    text = row.inner_text()
    assert "admin" in text and "budget.max_limit: 5 → 7.5" in text, text
    assert row.locator("a[href='/ui/keys/vk-audited']").inner_text() == "audited key"
    screenshot(page, "audit")

    page.goto("/ui/audit?entity_type=virtual_key&entity_id=vk-audit-gone")
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == 2  # created, deleted
    for index in range(2):
        assert "deleted" in rows.nth(index).inner_text()
        assert rows.nth(index).locator("a").count() == 0  # no link to a page that is gone


def test_the_explain_panel_says_what_a_request_would_get_and_which_limit_binds(page: Any, gateway: RunningGateway) -> None:
    value = make_key(gateway, "vk-explained", "explained key",
                     rate_limit={"request_max_limit": 1, "request_reset_duration": "1h"},
                     budget={"max_limit": 100, "reset_duration": "1M"})
    log_in(page)
    page.goto("/ui/keys/vk-explained")
    page.fill("#explain input[name=explain_model]", "openai/gpt-4o-mini")
    page.click("#explain button:has-text('Explain')")
    assert page.get_attribute(".explained", "data-decision") == "allow"
    assert "Allowed" in page.inner_text(".explained")
    assert page.locator(".explained tbody tr").count() == 2  # the budget and the request limit

    chat(gateway, value)
    page.reload()  # the explanation is a GET: reloading asks again, now
    assert page.get_attribute(".explained", "data-decision") == "request_limited"
    binding = page.inner_text(".explained tr.binding")
    assert "binds" in binding and "1 request per hour" in binding, binding
    assert "allows 1 requests per 1h" in page.inner_text(".explained .why-line")
    screenshot(page, "explain-panel")

    page.fill("#explain input[name=explain_model]", "nosuchprovider/x")
    page.click("#explain button:has-text('Explain')")
    assert "Could not explain the request" in page.inner_text("#explain .problem")


def test_usage_charts_per_group_over_a_chosen_range(page: Any, gateway: RunningGateway) -> None:
    first = make_key(gateway, "vk-chart-a", "chart a")
    second = make_key(gateway, "vk-chart-b", "chart b")
    for _ in range(3):
        chat(gateway, first)
    chat(gateway, second)
    log_in(page)
    page.goto("/ui/keys/vk-chart-a")
    page.click("a:has-text('charts →')")
    page.wait_for_url("**/ui/usage?by=model&virtual_key_id=vk-chart-a")
    assert page.locator("svg.chart").count() == 3  # spend, tokens, requests
    [row] = page.locator("table.usage tbody tr").all()
    assert row.inner_text().split("\t")[0] == "gpt-4o-mini" and "\t3\t" in row.inner_text()

    for chosen in ("24h", "7d", "30d"):
        page.goto(f"/ui/usage?by=key&range={chosen}&model=openai/gpt-4o-mini")
        assert page.locator("svg.chart").count() == 3
        table = page.inner_text("table.usage")
        assert "chart a" in table and "chart b" in table
        assert page.locator(".chart-legend a:has-text('chart a')").count() == 1
        bars = page.locator("svg.chart").nth(2).locator("rect.series0, rect.series1")
        assert bars.count() >= 2  # requests stacked by key in their own colours
    screenshot(page, "usage")
    page.goto("/ui/usage?by=team&customer_id=no+such+customer")
    assert "no customer has the id or name 'no such customer'" in page.inner_text(".problem")


def test_detail_and_limits_pages_fit_a_phone(browser: Any, gateway: RunningGateway) -> None:
    value = make_key(gateway, "vk-on-a-phone-with-a-rather-long-identifier", "a key with a long name to wrap on a phone",
                     budget={"max_limit": 12.5, "reset_duration": "1M"},
                     rate_limit={"request_max_limit": 1, "request_reset_duration": "1h"})
    chat(gateway, value)
    with pytest.raises(openai.RateLimitError):
        chat(gateway, value)
    with admin(gateway) as api:
        assert api.post("/api/governance/customers", json={"id": "phone-customer", "name": "Phone customer"}).status_code == 201
        assert api.post("/api/governance/teams", json={"id": "phone-team", "name": "Phone team",
                                                        "customer_id": "phone-customer"}).status_code == 201
        entry = api.get("/api/logs", params={"virtual_key_id": "vk-on-a-phone-with-a-rather-long-identifier"}).json()
    phone = browser.new_context(viewport=PHONE, base_url=gateway.url, is_mobile=True, has_touch=True)
    try:
        tab = phone.new_page()
        log_in(tab)
        key_page = "/ui/keys/vk-on-a-phone-with-a-rather-long-identifier"
        pages = {"phone-key": key_page + "?explain_model=openai/gpt-4o-mini", "phone-team": "/ui/teams/phone-team",
                 "phone-customer": "/ui/customers/phone-customer", "phone-limits": "/ui/limits",
                 "phone-log-entry": f"/ui/logs/{entry['logs'][0]['id']}", "phone-audit": "/ui/audit",
                 "phone-usage": "/ui/usage?by=model", "phone-key-new": "/ui/keys/new"}
        for name, target in pages.items():
            tab.goto(target)
            wide = tab.evaluate("""() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                             && !e.closest('.scroll'))
                .map(e => e.tagName + '.' + e.className).slice(0, 5)""")
            assert tab.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], (target, wide)
            assert not wide, (target, wide)
            screenshot(tab, name)
    finally:
        phone.close()


def test_latency_and_limit_amounts_read_the_same_everywhere() -> None:
    assert [present.latency(v) for v in (0.44, 9.96, 312.4, 1204.6, None)] == [
        "0.4 ms", "10.0 ms", "312 ms", "1,205 ms", "—"]
    budget = {"unit": "usd", "limit": 12.5, "used": 1e-07}
    requests = {"unit": "requests", "limit": 1000, "used": 3}
    assert present.limit_amount(budget, "limit") == "$12.50" and present.limit_amount(budget, "used") == "$0.0000001"
    assert present.limit_amount(requests, "limit") == "1,000" and present.limit_amount(requests, "missing") == "—"


def test_the_overview_shows_a_deleted_top_spender_as_deleted(page: Any, gateway: RunningGateway) -> None:
    value = make_key(gateway, "vk-spent-then-gone", "spent then gone")
    for _ in range(6):  # more than any other key of this module: among the top five spenders
        chat(gateway, value)
    with admin(gateway) as api:
        assert api.delete(f"{KEYS}/vk-spent-then-gone").status_code == 200
    log_in(page)
    page.goto("/ui/")
    [item] = [li for li in page.locator(".toplist li").all() if "vk-spent-then-gone" in li.inner_text()]
    assert "deleted" in item.inner_text() and item.locator("a").count() == 0


def test_usage_over_a_custom_range(page: Any, gateway: RunningGateway) -> None:
    chat(gateway, make_key(gateway, "vk-custom-range", "custom range"))
    gateway.call(gateway.runtime.log_writer.flush())  # the page reads the request log: written, not buffered
    log_in(page)
    page.goto("/ui/usage?by=key&virtual_key_id=vk-custom-range")
    page.fill("input[name=start]", "2020-01-01T00:00")
    page.click("button:has-text('Show')")
    assert "a range of at most 92 days" in page.inner_text(".problem")
    assert page.get_attribute("input[name=end]", "aria-invalid") == "true"

    today = page.evaluate("new Date().toISOString().slice(0, 10)")
    page.fill("input[name=start]", f"{today}T00:00")
    with page.expect_navigation():  # the form's GET: read the new page, not the one with the problem
        page.click("button:has-text('Show')")
    page.locator("table.usage tbody tr").first.wait_for()
    assert page.locator("table.usage tbody tr").count() == 1
    assert page.locator("svg.chart").nth(2).locator("text.axis").first.is_visible()
    assert f"from {today} 00:00 until now UTC" in page.inner_text("main")
