"""Ownership in the admin UI, in a real browser: what the config file manages carries a
"config file" badge, its edit and delete controls are disabled with the reason beside
them (the API would refuse them anyway), and its usage can still be reset; what was made
through the API stays editable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.support import MockThread, gateway_config
from tests.support.gateway import RunningGateway, start_gateway
from tests.ui.conftest import log_in, screenshot
from tests.ui.test_pages import make_key

RATE = {"rate_limit": {"request_max_limit": 100, "request_reset_duration": "1d"}}
GOVERNANCE = {
    "teams": [{"id": "file-team", "name": "Team from the file", **RATE}],
    "virtual_keys": [{"id": "vk-file", "name": "Key from the file", "value": "tw-ui-from-the-file-0123456789",
                      "team_id": "file-team", **RATE}],
    "model_configs": [{"model_name": "gpt-4o-mini", "provider": "openai", **RATE}],
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    """This module's gateway: the UI fixtures' own, with governance in its config file."""
    settings = gateway_config(f"sqlite:///{tmp_path_factory.mktemp('ui-ownership')}/tollway.db", upstream.url,
                              governance=GOVERNANCE)
    settings["providers"]["openai"] |= RATE
    running = start_gateway(settings)
    yield running
    running.stop()


def _locked_controls(page: Any) -> dict[str, bool]:
    """Whether each kind of control on the page is disabled."""
    return {
        "limits": page.is_disabled("#limits button[type=submit]"),
        "limit fields": page.is_disabled("#limits input[name=budget_max_limit]"),
        "delete": page.locator(".page-head").get_by_text("Delete…").is_disabled(),
    }


def test_a_config_managed_key_is_badged_and_read_only_but_its_usage_can_be_reset(page: Any) -> None:
    log_in(page)
    page.goto("/ui/keys")
    row = page.locator("tr", has_text="Key from the file")
    assert row.locator(".badge.managed").inner_text() == "config file"

    page.goto("/ui/keys/vk-file")
    assert page.locator("h1 .badge.managed").inner_text() == "config file"
    note = page.inner_text(".managed-note")
    assert "declared in the config file" in note and "edit the file and restart" in note
    assert _locked_controls(page) == {"limits": True, "limit fields": True, "delete": True}
    assert page.is_disabled("button:has-text('Block key')")
    assert page.is_disabled("#details input[name=name]") and page.is_disabled("#providers button[type=submit]")
    screenshot(page, "ownership-config-key")

    page.click("button:has-text('Reset rate-limit usage')")  # an operator's action on counters: allowed
    assert "Rate-limit usage reset." in page.inner_text(".flash")


@pytest.mark.parametrize("url", ["/ui/teams/file-team", "/ui/providers/openai"])
def test_config_managed_teams_providers_and_models_are_read_only(page: Any, url: str) -> None:
    log_in(page)
    page.goto(url)
    assert page.locator("h1 .badge.managed").inner_text() == "config file"
    assert page.is_disabled("#limits button[type=submit]")
    page.goto("/ui/limits")
    model = page.locator("tr", has_text="gpt-4o-mini")
    assert model.locator(".badge.managed").count() == 1
    model.locator("a", has_text="gpt-4o-mini").click()
    assert page.is_disabled("#details button[type=submit]") and page.is_disabled("#limits button[type=submit]")


def test_a_key_made_through_the_api_stays_editable(page: Any, gateway: RunningGateway) -> None:
    make_key(gateway, "vk-made-here", team_id="file-team")
    log_in(page)
    page.goto("/ui/keys/vk-made-here")
    assert page.locator(".badge.managed").count() == 0 and page.locator(".managed-note").count() == 0
    assert _locked_controls(page) == {"limits": False, "limit fields": False, "delete": False}
    page.fill("#limits input[name=budget_max_limit]", "3")
    page.fill("#limits input[name=budget_reset_duration]", "1d")
    page.click("#limits button[type=submit]")
    assert "Limits saved." in page.inner_text(".flash")
