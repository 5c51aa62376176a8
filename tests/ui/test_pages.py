"""The admin UI's other promises, in a real browser: the admin token stays on the
server, bad form values read as sentences, provider and model limits are managed and
explained, keys are edited and deleted after a confirmation, and the pages fit a phone."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.api.support import ADMIN_TOKEN, admin
from tests.support.gateway import RunningGateway
from tests.ui.conftest import PHONE, log_in, screenshot

KEYS = "/api/governance/virtual-keys"


def make_key(gateway: RunningGateway, key_id: str, **extra: Any) -> str:
    with admin(gateway) as api:
        answer = api.post(KEYS, json={"id": key_id, "name": key_id, **extra})
        assert answer.status_code == 201, answer.text
        return answer.json()["virtual_key"]["value"]


def chat(gateway: RunningGateway, key: str, model: str) -> Any:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=10)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])


def problem(page: Any) -> str:
    return page.inner_text(".problem")


def test_login_keeps_the_admin_token_out_of_the_browser(page: Any, gateway: RunningGateway) -> None:
    page.goto("/ui/keys?search=x")
    assert page.url.endswith("/ui/login?next=%2Fui%2Fkeys%3Fsearch%3Dx")
    page.fill("input[name=token]", "not-the-admin-token-at-all")
    page.click("button[type=submit]")
    assert "That is not the admin token of this gateway." in problem(page)

    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/keys?search=x")
    [cookie] = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert ADMIN_TOKEN not in cookie["value"] and ADMIN_TOKEN not in page.content()
    assert page.evaluate("document.cookie") == ""  # not readable by scripts
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"

    page.click("button:has-text('Log out')")
    page.wait_for_url("**/ui/login")
    assert "You are logged out." in page.inner_text(".flash")
    page.context.add_cookies([cookie])  # the old cookie is revoked, not just forgotten
    page.goto("/ui/")
    assert "/ui/login" in page.url


def test_a_stale_form_and_an_unknown_entity_read_as_sentences(page: Any) -> None:
    log_in(page)
    page.goto("/ui/keys/no-such-key")
    assert "virtual key 'no-such-key' not found" in problem(page)
    page.goto("/ui/teams")
    page.click("summary:has-text('New team')")
    page.fill("#new input[name=name]", "Stale")
    page.evaluate("document.querySelector('#new input[name=_csrf]').value = 'forged'")
    page.click("button:has-text('Create team')")
    assert "This form is out of date" in problem(page)


def test_bad_form_values_show_readable_errors_and_keep_the_input(page: Any) -> None:
    log_in(page)
    page.goto("/ui/keys/new")
    page.fill("input[name=name]", "bad budget")
    page.fill("input[name=budget_max_limit]", "ten dollars")
    page.fill("input[name=budget_reset_duration]", "1 fortnight")
    page.click("button:has-text('Create key')")
    text = problem(page)
    assert "Could not create the key: please correct the highlighted values." in text
    assert "budget › amount (USD): Input should be a valid decimal" in text
    assert "budget › reset period: invalid duration '1 fortnight'" in text
    assert page.input_value("input[name=budget_max_limit]") == "ten dollars"
    assert page.get_attribute("input[name=budget_max_limit]", "aria-invalid") == "true"
    assert page.input_value("input[name=name]") == "bad budget"
    screenshot(page, "form-error")

    page.fill("input[name=budget_max_limit]", "")
    page.fill("input[name=budget_reset_duration]", "")
    page.fill("input[name=request_max_limit]", "100")
    page.click("button:has-text('Create key')")
    assert "request limit: give both an amount and a reset period" in problem(page)

    page.goto("/ui/teams")
    page.click("summary:has-text('New team')")
    page.fill("#new input[name=name]", "Twice")
    page.fill("#new input[name=id]", "team-twice")
    page.click("button:has-text('Create team')")
    page.goto("/ui/teams")
    page.click("summary:has-text('New team')")
    page.fill("#new input[name=name]", "Twice again")
    page.fill("#new input[name=id]", "team-twice")
    page.click("button:has-text('Create team')")
    assert "team 'team-twice' already exists" in problem(page)
    assert page.is_visible("#new input[name=name]")  # the form stays open with the error


def test_model_and_provider_limits_are_managed_and_explained(page: Any, gateway: RunningGateway) -> None:
    log_in(page)
    page.goto("/ui/limits")
    page.click("summary:has-text('New model config')")
    page.fill("#new input[name=model_name]", "gpt-4o")
    page.select_option("#new select[name=provider]", "openai")
    page.fill("#new input[name=request_max_limit]", "2")
    page.fill("#new input[name=request_reset_duration]", "1h")
    page.click("button:has-text('Create model config')")
    assert "Model config created." in page.inner_text(".flash")
    model_page = page.url

    page.goto("/ui/providers/openai")
    page.fill("#limits input[name=budget_max_limit]", "100")
    page.fill("#limits input[name=budget_reset_duration]", "1M")
    page.check("#limits input[name=budget_calendar_aligned]")
    page.click("button:has-text('Save limits')")
    assert "Limits saved." in page.inner_text(".flash")
    assert "of $100.00 per month" in page.inner_text(".meters")

    value = make_key(gateway, "vk-model")
    for _ in range(2):
        chat(gateway, value, "openai/gpt-4o")
    with pytest.raises(openai.RateLimitError):
        chat(gateway, value, "openai/gpt-4o")
    page.goto("/ui/logs?decision=request_limited&model=gpt-4o")
    why = page.inner_text("tr.why.denied")
    assert "model config openai/gpt-4o" in why and "allows 2 requests per 1h" in why, why
    page.click("tr.why summary")
    assert "2 of 2 requests per hour" in page.inner_text("tr.why .meters")

    page.goto("/ui/")
    near = page.inner_text("section:has(h2:has-text('Limits close to their cap'))")
    assert "model config" in near and "2 of 2 requests per hour" in near, near
    screenshot(page, "overview-near-cap")
    page.goto("/ui/limits")
    screenshot(page, "limits")
    page.goto(model_page)
    page.click("button:has-text('Reset rate-limit usage')")
    assert "0 of 2 requests per hour" in page.inner_text(".meters")
    chat(gateway, value, "openai/gpt-4o")


def test_a_concurrency_limit_is_set_shown_and_removed_in_the_limits_card(page: Any, gateway: RunningGateway) -> None:
    log_in(page)
    page.goto("/ui/providers/anthropic")
    page.fill("#limits input[name=max_in_flight]", "3")
    page.fill("#limits input[name=queue_timeout_ms]", "250")
    page.click("button:has-text('Save limits')")
    assert "Limits saved." in page.inner_text(".flash")
    assert "0 of 3 requests in flight" in page.inner_text(".meters")
    assert page.input_value("#limits input[name=queue_timeout_ms]") == "250"
    concurrency = gateway.runtime.snapshot.providers["anthropic"].concurrency
    assert (concurrency.max_in_flight, concurrency.queue_timeout_ms) == (3, 250)
    page.fill("#limits input[name=max_in_flight]", "")
    page.fill("#limits input[name=queue_timeout_ms]", "")
    page.click("button:has-text('Save limits')")
    assert "Limits saved." in page.inner_text(".flash")
    assert "requests in flight" not in page.inner_text("main")
    assert gateway.runtime.snapshot.providers.get("anthropic") is None  # no limits left


def test_key_settings_provider_configs_and_delete(page: Any, gateway: RunningGateway) -> None:
    make_key(gateway, "vk-edit")
    log_in(page)
    page.goto("/ui/keys?search=vk-edit")
    page.click("a:has-text('vk-edit')")
    page.fill("#details input[name=allowed_models]", "gpt-4o-mini, openai/gpt-4o")
    page.click("button:has-text('Save settings')")
    assert "Key saved." in page.inner_text(".flash")
    assert page.inner_text(".facts div:has(dt:has-text('Models')) dd") == "gpt-4o-mini, openai/gpt-4o"

    openai_box = page.locator("fieldset.provider-config", has=page.locator("legend", has_text="openai"))
    openai_box.locator("input[name$=_enabled]").check()
    openai_box.locator("input[name$=request_max_limit]").fill("0")
    openai_box.locator("input[name$=request_reset_duration]").fill("1m")
    page.click("button:has-text('Save provider configs')")
    assert "provider configs openai › rate limit › requests: Input should be greater than 0" in problem(page)
    openai_box.locator("input[name$=request_max_limit]").fill("5")
    page.click("button:has-text('Save provider configs')")
    assert "Provider configs saved." in page.inner_text(".flash")
    assert page.inner_text(".facts div:has(dt:has-text('Providers')) dd") == "openai"
    assert "Provider config: openai" in page.inner_text("section:has(h2:has-text('Usage'))")

    page.click("a:has-text('Delete…')")
    assert "cannot be undone" in page.inner_text("main")
    page.click("button:has-text('Delete virtual key')")
    page.wait_for_url("**/ui/keys")
    assert "Virtual key 'vk-edit' deleted." in page.inner_text(".flash")
    page.goto("/ui/keys/vk-edit")
    assert "not found" in problem(page)


def test_main_pages_render_on_a_laptop_and_a_phone(page: Any, browser: Any, gateway: RunningGateway) -> None:
    log_in(page)
    for chosen in ("24h", "7d"):
        page.goto(f"/ui/?range={chosen}")
        assert page.locator("svg.chart").count() == 2
        assert page.get_attribute(".tabs a[aria-current=page]", "href") == f"/ui/?range={chosen}"
    page.goto("/ui/customers")
    assert page.evaluate("getComputedStyle(document.body).margin") == "0px"  # the stylesheet loaded
    screenshot(page, "customers")

    phone = browser.new_context(viewport=PHONE, base_url=gateway.url, is_mobile=True, has_touch=True)
    try:
        tab = phone.new_page()
        log_in(tab)
        for name, path in (("phone-overview", "/ui/"), ("phone-keys", "/ui/keys"), ("phone-logs", "/ui/logs")):
            tab.goto(path)
            assert tab.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
            screenshot(tab, name)
        assert not tab.is_visible("nav a:has-text('Teams')")  # behind the menu button
        tab.click("label.nav-button")
        tab.click("nav a:has-text('Teams')")
        tab.wait_for_url("**/ui/teams")
    finally:
        phone.close()
