"""A key's lifecycle in the admin UI, in a real browser against the real gateway: the
key page shows its expiry and when it was last used, an expiry set in the page ends the
key at once, and the rotate button issues a new value (shown once) while the old one
works for the grace period chosen."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.api.support import admin, unique
from tests.support.gateway import RunningGateway
from tests.ui.conftest import log_in, screenshot

MODEL = "openai/gpt-4o-mini"


def chat(gateway: RunningGateway, key: str) -> Any:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=10)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}])


def new_key(gateway: RunningGateway) -> dict[str, Any]:
    with admin(gateway) as api:
        response = api.post("/api/governance/virtual-keys", json={"id": unique("vk"), "name": unique("lifecycle")})
    assert response.status_code == 201, response.text
    return response.json()["virtual_key"]


def fact(page: Any, field: str) -> str:
    return page.inner_text(f"dd[data-field={field}]")


def test_the_key_page_shows_expiry_and_last_use_and_ends_an_expired_key(page: Any, gateway: RunningGateway) -> None:
    key = new_key(gateway)
    log_in(page)
    page.goto(f"/ui/keys/{key['id']}")
    assert fact(page, "expires_at") == "never" and fact(page, "last_used_at").startswith("never")
    chat(gateway, key["value"])
    gateway.call(gateway.runtime.flush_usage())
    page.reload()
    assert fact(page, "last_used_at")[:2] == "20" and "UTC" in fact(page, "last_used_at")

    page.fill("#details input[name=expires_at]", "2020-01-01T00:00:00Z")
    page.click("button:has-text('Save settings')")
    assert "Key saved." in page.inner_text(".flash")
    assert "expired" in page.inner_text("h1") and fact(page, "expires_at").startswith("2020-01-01 00:00:00 UTC")
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(gateway, key["value"])
    assert caught.value.body["type"] == "virtual_key_expired"
    screenshot(page, "key-expired")

    page.fill("#details input[name=expires_at]", "not a time")
    page.click("button:has-text('Save settings')")
    assert page.locator("#details input[name=expires_at][aria-invalid=true]").count() == 1
    page.goto(f"/ui/keys/{key['id']}")
    page.fill("#details input[name=expires_at]", "")
    page.click("button:has-text('Save settings')")
    assert fact(page, "expires_at") == "never" and "expired" not in page.inner_text("h1")
    assert chat(gateway, key["value"]).choices


def test_the_rotate_button_shows_the_new_value_once_and_keeps_the_old_for_the_grace(page: Any,
                                                                                       gateway: RunningGateway) -> None:
    key = new_key(gateway)
    log_in(page)
    page.goto(f"/ui/keys/{key['id']}")
    page.select_option("#rotate select[name=grace_period]", "1h")
    page.click("button:has-text('Rotate key')")
    page.wait_for_selector("text=shown only this once")
    assert "rotated" in page.inner_text("h1")
    assert "keeps working until" in page.inner_text("[data-field=previous_value]")
    new = page.input_value("#key-value")
    assert new.startswith("tw-") and new != key["value"]
    screenshot(page, "key-rotated")
    assert chat(gateway, new).choices and chat(gateway, key["value"]).choices
    page.click("text=Open the key")
    assert new not in page.content()  # shown once
    assert fact(page, "previous_value_expires_at").startswith("works until")

    page.select_option("#rotate select[name=grace_period]", "0s")
    page.click("button:has-text('Rotate key')")
    page.wait_for_selector("text=shown only this once")
    assert "no longer works" in page.inner_text("[data-field=previous_value]")
    newest = page.input_value("#key-value")
    page.reload()  # the value is gone once the page was shown
    assert newest not in page.content()
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, new)
    assert chat(gateway, newest).choices
