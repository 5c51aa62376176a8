"""Limit rules in the admin UI (real browser, real gateway, requests sent with the `openai`
SDK): the rules section of the limits page with a rule's live usage, a rule's page with
its selector, and a template's page with its top values, each with its own usage."""

from __future__ import annotations

from typing import Any

import openai

from tests.api.support import admin
from tests.support.gateway import RunningGateway
from tests.ui.conftest import log_in, screenshot

MODEL = "openai/gpt-4o-mini"
HOURLY = {"request_reset_duration": "1h"}


def chat(gateway: RunningGateway, key: str, user: str) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=10)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], user=user)


def test_rules_are_listed_with_usage_and_a_templates_values_shown(page: Any, gateway: RunningGateway) -> None:
    with admin(gateway) as api:
        assert api.post("/api/governance/teams", json={"id": "ui-rules", "name": "Rules team"}).status_code == 201
        key = api.post("/api/governance/virtual-keys", json={"name": "ui rules key", "team_id": "ui-rules"}).json()
        for rule in ({"name": "ui-team-gpt", "match": {"team": "ui-rules", "model": "gpt-4o-mini"},
                      "rate_limit": {"request_max_limit": 10, **HOURLY}},
                     {"name": "ui-per-user", "match": {"team": "ui-rules"}, "per": "end_user",
                      "rate_limit": {"request_max_limit": 5, **HOURLY}}):
            assert api.post("/api/governance/limits", json=rule).status_code == 201
    value = key["virtual_key"]["value"]
    for user in ("zoe", "zoe", "yann"):
        chat(gateway, value, user)
    gateway.call(gateway.runtime.flush_usage())

    log_in(page)
    page.goto("/ui/limits")
    row = page.locator("table.limit-rules tr", has_text="ui-team-gpt")
    assert "team ui-rules" in row.inner_text() and "3" in row.locator(".meter-cell").inner_text()
    screenshot(page, "limit-rules")

    page.click("a:has-text('ui-per-user')")
    page.wait_for_url("**/ui/limits/ui-per-user")
    assert "per end user" in page.locator("#selector").inner_text()
    values = page.locator("table.rule-values tbody tr")
    assert values.count() == 2
    assert values.first.locator("code").inner_text() == "zoe"  # the most used first
    assert "2" in values.first.locator(".meter-cell").inner_text()
    screenshot(page, "limit-rule-values")


def test_a_rule_denial_links_to_the_rules_page_even_for_a_templated_value() -> None:
    from tollway.ui.present import entity_url, level_name

    assert entity_url("limit", "support-users:alice") == "/ui/limits/support-users"
    assert entity_url("limit", "team-gpt") == "/ui/limits/team-gpt"
    assert level_name("limit") == "limit rule"
