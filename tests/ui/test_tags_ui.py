"""Request tags in the admin UI (real browser, real gateway, requests sent with the `openai`
SDK): a key's allowed and forced tags set in the new-key form and changed in its settings
(a bad tag marked on its field), the request log filtered by tag, and usage per tag."""

from __future__ import annotations

from typing import Any

import openai

from tests.support.gateway import RunningGateway
from tests.ui.conftest import log_in, screenshot

MODEL = "openai/gpt-4o-mini"


def chat(gateway: RunningGateway, key: str, tags: str | None = None) -> None:
    headers = {"x-tollway-tags": tags} if tags else None
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=10, default_headers=headers)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])


def test_a_keys_tags_are_set_in_the_ui_and_its_traffic_is_shown_per_tag(page: Any, gateway: RunningGateway) -> None:
    log_in(page)
    page.goto("/ui/keys/new")
    page.fill("input[name=name]", "tagged service")
    page.fill("input[name=id]", "vk-tagged")
    page.fill("input[name=allowed_tags]", "Support, search")
    page.fill("input[name=forced_tags]", "cc:42")
    page.click("button:has-text('Create key')")
    value = page.input_value("#key-value")
    page.goto("/ui/keys/vk-tagged")
    assert page.input_value("#details input[name=allowed_tags]") == "support, search"
    assert page.input_value("#details input[name=forced_tags]") == "cc:42"

    page.fill("#details input[name=forced_tags]", "bad;tag")
    page.click("button:has-text('Save settings')")
    assert page.locator("#details input[name=forced_tags][aria-invalid=true]").count() == 1
    page.goto("/ui/keys/vk-tagged")
    assert page.input_value("#details input[name=forced_tags]") == "cc:42"  # nothing written
    screenshot(page, "key-tags")

    chat(gateway, value, "support")
    chat(gateway, value, "search,support")
    chat(gateway, value)
    page.goto("/ui/logs?tag=search")
    rows = page.locator("table.log tbody tr:not(.why)")
    assert rows.count() == 1
    assert set(rows.first.locator("a.tag").all_inner_texts()) == {"#search", "#support", "#cc:42"}

    page.goto("/ui/usage?by=tag&virtual_key_id=vk-tagged")
    groups = page.locator("table.usage tbody td[data-label=Tag]").all_inner_texts()
    assert sorted(groups) == ["cc:42", "search", "support"]
    screenshot(page, "usage-per-tag")
