"""Limit forms show and edit each budget's and token limit's `enforcement` (estimate |
strict) and `on_insufficient` (refuse | clamp), naming the global default; the explain
panel shows what strict limits do to a request. Real gateway, headless Chromium."""

from __future__ import annotations

from typing import Any

from tests.api.support import admin
from tests.support.gateway import RunningGateway
from tests.ui.conftest import log_in, screenshot
from tests.ui.test_pages import make_key
from tollway.governance.model import Enforcement


def _select(page: Any, name: str) -> Any:
    return page.locator(f"#limits select[name={name}]")


def test_modes_are_shown_with_the_default_edited_and_in_force(page: Any, gateway: RunningGateway) -> None:
    log_in(page)
    page.goto("/ui/providers/openai")
    default_label = _select(page, "budget_enforcement").locator("option[value='']").inner_text()
    assert default_label == "default (estimate)"  # the configured governance_defaults
    page.fill("#limits input[name=budget_max_limit]", "50")
    page.fill("#limits input[name=budget_reset_duration]", "1d")
    page.fill("#limits input[name=token_max_limit]", "100000")
    page.fill("#limits input[name=token_reset_duration]", "1h")
    _select(page, "budget_enforcement").select_option("strict")
    _select(page, "budget_on_insufficient").select_option("clamp")
    _select(page, "rate_enforcement").select_option("strict")
    page.click("button:has-text('Save limits')")
    assert "Limits saved." in page.inner_text(".flash")
    screenshot(page, "limit-modes")

    policy = gateway.runtime.snapshot.providers["openai"]
    assert policy.budget.enforcement == Enforcement(strict=True, clamp=True)
    assert policy.rate_limit.enforcement == Enforcement(strict=True, clamp=False)  # refuse: the default
    assert _select(page, "budget_enforcement").input_value() == "strict"  # shown again after the save
    assert _select(page, "budget_on_insufficient").input_value() == "clamp"
    assert _select(page, "rate_on_insufficient").input_value() == ""  # still "default"

    _select(page, "budget_enforcement").select_option("")
    page.click("button:has-text('Save limits')")
    screenshot(page, "limit-modes-default")
    assert "Limits saved." in page.inner_text(".flash")
    assert gateway.runtime.snapshot.providers["openai"].budget.enforcement == Enforcement(strict=False, clamp=True)
    with admin(gateway) as api:
        shown = api.get("/api/governance/providers/openai").json()
    provider = shown.get("provider", shown)
    assert provider["budget"]["enforcement"] is None  # null: the global default, not a copy of it
    page.fill("#limits input[name=budget_max_limit]", "")
    page.fill("#limits input[name=budget_reset_duration]", "")
    page.fill("#limits input[name=token_max_limit]", "")
    page.fill("#limits input[name=token_reset_duration]", "")
    page.click("button:has-text('Save limits')")
    assert "Limits saved." in page.inner_text(".flash")


def test_a_mode_the_api_refuses_is_shown_against_its_field(page: Any, gateway: RunningGateway) -> None:
    log_in(page)
    page.goto("/ui/providers/anthropic")
    page.fill("#limits input[name=budget_max_limit]", "5")
    page.fill("#limits input[name=budget_reset_duration]", "1d")
    page.evaluate("document.querySelector('#limits select[name=budget_enforcement]').add(new Option('exact', 'exact', true, true))")
    page.click("button:has-text('Save limits')")
    assert "enforcement" in page.inner_text(".problem")
    assert _select(page, "budget_enforcement").get_attribute("aria-invalid") == "true"
    assert gateway.runtime.snapshot.providers.get("anthropic") is None  # nothing written


def test_the_explain_panel_shows_strict_reservations(page: Any, gateway: RunningGateway) -> None:
    make_key(gateway, "vk-strict-explained", rate_limit={"token_max_limit": 1_000, "token_reset_duration": "1d",
                                                         "enforcement": "strict"})
    log_in(page)
    page.goto("/ui/keys/vk-strict-explained")
    page.fill("#explain input[name=explain_model]", "openai/gpt-4o-mini")
    page.fill("#explain input[name=explain_prompt_tokens]", "10")
    page.click("#explain button:has-text('Explain')")
    explained = page.inner_text(".explained")
    assert page.get_attribute(".explained", "data-decision") == "token_limited"  # no cap: 4,096 injected, worst 4,106
    assert "Worst case 4,106 tokens" in explained and "strict, refuse" in explained
    assert "4,106" in page.inner_text(".explained tr.binding td[data-label='This request']")
