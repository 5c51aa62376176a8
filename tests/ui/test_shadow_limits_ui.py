"""Shadow limits in the admin UI, in a real browser: a limit is put in shadow mode from its
limits card (and shown so), requests it would have denied are answered and listed under
the request log's "would-be denials", and switching it back to enforce binds."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.support.gateway import RunningGateway
from tests.ui.conftest import log_in, screenshot
from tests.ui.test_pages import chat, make_key

MODEL = "openai/gpt-4o-mini"


def test_a_limit_put_in_shadow_from_its_card_lets_requests_through_and_lists_them(page: Any,
                                                                                 gateway: RunningGateway) -> None:
    value = make_key(gateway, "vk-shadow-ui", rate_limit={"request_max_limit": 1, "request_reset_duration": "1h"})
    log_in(page)
    page.goto("/ui/keys/vk-shadow-ui")
    assert not page.is_checked("#limits input[name=rate_limit_shadow]")
    page.check("#limits input[name=rate_limit_shadow]")
    page.click("button:has-text('Save limits')")
    assert "Limits saved." in page.inner_text(".flash")
    assert page.is_checked("#limits input[name=rate_limit_shadow]")
    assert "shadow" in page.inner_text(".meters")  # the meter says so
    key = next(k for k in gateway.runtime.snapshot.keys_by_hash.values() if k.id == "vk-shadow-ui")
    assert key.limits.rate_limit.shadow and key.limits.rate_limit.request_max_limit == 1  # the rest kept

    for _ in range(3):
        chat(gateway, value, MODEL)  # over the limit of one request: all answered

    page.goto("/ui/keys/vk-shadow-ui")
    page.click("a:has-text('Would-be denials')")
    page.wait_for_url("**would_deny=true**")
    assert page.is_checked("input[name=would_deny]")
    rows = page.locator("tr.why.shadow")
    assert rows.count() == 2
    assert "request_limited" in rows.first.inner_text() and "virtual key" in rows.first.inner_text()
    screenshot(page, "shadow-would-be-denials")
    page.click("table.log tbody tr:not(.why) a >> nth=0")
    assert "Would deny in shadow" in page.inner_text("#would-deny")

    page.goto("/ui/keys/vk-shadow-ui")
    page.uncheck("#limits input[name=rate_limit_shadow]")
    page.click("button:has-text('Save limits')")
    assert "Limits saved." in page.inner_text(".flash")
    with pytest.raises(openai.RateLimitError):
        chat(gateway, value, MODEL)  # enforced at once, on what shadow mode counted


def test_saving_other_fields_keeps_a_limit_in_shadow(page: Any, gateway: RunningGateway) -> None:
    make_key(gateway, "vk-shadow-kept", budget={"max_limit": 5, "reset_duration": "1d", "mode": "shadow"})
    log_in(page)
    page.goto("/ui/keys/vk-shadow-kept")
    assert page.is_checked("#limits input[name=budget_shadow]")
    page.fill("#limits input[name=budget_max_limit]", "6")
    page.click("button:has-text('Save limits')")
    assert "Limits saved." in page.inner_text(".flash")
    key = next(k for k in gateway.runtime.snapshot.keys_by_hash.values() if k.id == "vk-shadow-kept")
    assert key.limits.budget.shadow and key.limits.budget.max_limit_nano == 6 * 10**9
