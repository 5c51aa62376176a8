"""The operator's main path through the admin UI, in a real browser against the real
gateway: a customer, a team and a key with a budget made in the UI; requests sent
with the openai SDK move the usage bars and fill the request log; a denied request
says why; a blocked key is refused at once."""

from __future__ import annotations

import re
from typing import Any

import openai
import pytest

from tests.support.gateway import RunningGateway
from tests.ui.conftest import log_in, screenshot

MODEL = "openai/gpt-4o-mini"


def chat(gateway: RunningGateway, key: str) -> Any:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=10)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}])


def meter(page: Any, label: str) -> Any:
    """The usage meter labelled ``label`` in the page's first meter list."""
    return page.locator(".meter", has=page.locator(".meter-label", has_text=re.compile(f"^{label}$"))).first


def create_customer_and_team(page: Any) -> None:
    page.goto("/ui/customers")
    page.click("summary:has-text('New customer')")
    page.fill("input[name=name]", "Acme")
    page.fill("input[name=id]", "acme")
    page.fill("input[name=budget_max_limit]", "50")
    page.fill("input[name=budget_reset_duration]", "1M")
    page.click("button:has-text('Create customer')")
    page.wait_for_url("**/ui/customers/acme")
    page.goto("/ui/teams")
    page.click("summary:has-text('New team')")
    page.fill("input[name=name]", "Search")
    page.fill("input[name=id]", "search")
    page.select_option("#new select[name=customer_id]", "acme")
    page.fill("input[name=budget_max_limit]", "5")
    page.fill("input[name=budget_reset_duration]", "1d")
    page.click("button:has-text('Create team')")
    page.wait_for_url("**/ui/teams/search")
    assert "Team created." in page.inner_text(".flash")


def create_key(page: Any) -> str:
    """Create the team's key with a budget and a request limit; return its value."""
    page.goto("/ui/teams/search")
    page.click("text=New key for this team")
    page.fill("input[name=name]", "search service")
    page.fill("input[name=id]", "vk-search")
    assert page.input_value("select[name=owner]") == "team:search"
    page.fill("input[name=budget_max_limit]", "0.001")
    page.fill("input[name=budget_reset_duration]", "1h")
    page.fill("input[name=request_max_limit]", "3")
    page.fill("input[name=request_reset_duration]", "1m")
    page.click("button:has-text('Create key')")
    page.wait_for_selector("text=shown only this once")
    value = page.input_value("#key-value")
    assert value.startswith("tw-") and len(value) > 40
    page.click("button[data-copy]")
    page.wait_for_selector("text=Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == value
    page.click("text=Open the key")
    page.wait_for_url("**/ui/keys/vk-search")
    assert value not in page.content()  # shown once, never again
    return value


def test_team_key_budget_usage_log_block(page: Any, gateway: RunningGateway) -> None:
    log_in(page)
    create_customer_and_team(page)
    value = create_key(page)
    assert meter(page, "Requests").locator(".meter-text").inner_text() == "0 of 3 requests per minute"
    assert meter(page, "Budget").locator(".meter-text").inner_text() == "$0.00 of $0.001 per hour"

    for _ in range(3):
        assert chat(gateway, value).choices[0].message.content
    page.reload()
    requests = meter(page, "Requests")
    assert requests.locator(".meter-text").inner_text() == "3 of 3 requests per minute"
    assert "full" in requests.get_attribute("class")
    assert re.match(r"\d+ s|1 min", requests.locator("time").inner_text())
    budget_text = meter(page, "Budget").locator(".meter-text").inner_text()
    assert budget_text.startswith("$0.0000") and budget_text.endswith("of $0.001 per hour"), budget_text
    assert page.locator(".meter .fill").first.get_attribute("width") != "0"
    screenshot(page, "key-detail")

    with pytest.raises(openai.RateLimitError):
        chat(gateway, value)
    page.click("text=in the request log")
    page.wait_for_url("**/ui/logs?virtual_key_id=vk-search")
    assert page.locator("table.log tbody tr:not(.why)").count() == 4
    why = page.inner_text("tr.why.denied")
    assert "virtual key search service" in why and "allows 3 requests per 1m" in why, why
    page.click("tr.why summary")
    assert "3 of 3 requests per minute" in page.inner_text("tr.why .meters")
    screenshot(page, "logs")
    page.select_option("select[name=decision]", "request_limited")
    page.click("button:has-text('Filter')")
    assert page.locator("table.log tbody tr:not(.why)").count() == 1

    page.goto("/ui/keys/vk-search")
    page.click("button:has-text('Reset rate-limit usage')")
    assert "Rate-limit usage reset." in page.inner_text(".flash")
    assert meter(page, "Requests").locator(".meter-text").inner_text() == "0 of 3 requests per minute"
    page.click("button:has-text('Block key')")
    assert "Key blocked" in page.inner_text(".flash")
    assert page.inner_text("h1 .badge") == "blocked"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat(gateway, value)
    assert "virtual_key_blocked" in str(denied.value.body)
    page.goto("/ui/logs?decision=virtual_key_blocked")
    why = page.inner_text("tr.why.denied")
    assert "virtual key search service" in why and "is inactive" in why, why

    page.goto("/ui/keys/vk-search")
    page.click("button:has-text('Unblock key')")
    assert chat(gateway, value).choices[0].message.content

    page.goto("/ui/customers/acme")
    assert page.inner_text("a[href='/ui/teams/search']") == "Search"
    spend = page.inner_text(".facts div:has(dt:has-text('Spend this month')) dd")
    assert spend.startswith("$0.0000") and re.search(r"\b[4-6] requests", spend), spend
    page.goto("/ui/")
    assert "search service" in page.inner_text("section:has(h2:has-text('Top keys'))")
    screenshot(page, "overview")
    page.goto("/ui/keys")
    screenshot(page, "keys")
    page.goto("/ui/teams")
    screenshot(page, "teams")
