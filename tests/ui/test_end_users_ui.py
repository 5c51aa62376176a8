"""End users in the UI: the end-users page ranks them by spend and narrows them by team and
id, the request log filters by end user, and an end user's denial names them (real
browser, real gateway, requests sent with the `openai` SDK)."""

from __future__ import annotations

from typing import Any

import openai

from tests.api.support import admin
from tests.support.gateway import RunningGateway
from tests.ui.conftest import log_in, screenshot

HELLO = [{"role": "user", "content": "hi"}]


def test_end_users_are_ranked_filtered_and_named_in_the_log(page: Any, gateway: RunningGateway) -> None:
    with admin(gateway) as api:
        api.post("/api/governance/teams", json={"id": "eu-team", "name": "Bot team", "end_user_limits": {
            "rate_limit": {"request_max_limit": 2, "request_reset_duration": "1m"}}})
        value = api.post("/api/governance/virtual-keys", json={"id": "vk-eu", "name": "bot key",
                                                               "team_id": "eu-team"}).json()["virtual_key"]["value"]
    client = openai.OpenAI(base_url=gateway.v1, api_key=value, max_retries=0, timeout=10)
    for user, count in (("ursula", 2), ("ulf", 1)):
        for _ in range(count):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, user=user)
    try:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, user="ursula")
    except openai.RateLimitError:
        pass
    log_in(page)

    page.goto("/ui/end-users?team_id=Bot+team&sort=requests")
    assert page.locator("table.end-users td[data-label='End user']").all_inner_texts() == ["ursula", "ulf"]
    screenshot(page, "end-users")
    page.fill("input[name=search]", "ul")
    page.click("form.filters button[type=submit]")
    assert page.locator("table.end-users td[data-label='End user']").all_inner_texts() == ["ulf"]

    page.goto("/ui/end-users")
    page.click("table.end-users a:text-is('ursula')")
    page.wait_for_url("**/ui/logs?end_user=ursula")
    assert page.input_value("input[name=end_user]") == "ursula"
    assert page.locator("table.log tbody tr:not(.why)").count() == 3
    why = page.locator("tr.why.denied").first.inner_text()
    assert "end user" in why and "ursula" in why
    page.goto("/ui/end-users?team_id=no-such-team")
    assert page.locator(".problem, [role=alert]").count() >= 1
