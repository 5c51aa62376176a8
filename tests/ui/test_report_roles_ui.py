"""The overview and the usage page name their top spenders from the spend report itself
(one batch call, names read in its snapshot) for the roles that may read names, and still
render for a usage reader, who reads spend but not the keys: deleted keys shown as deleted."""

from __future__ import annotations

from typing import Any

from tests.api.admin_token_support import create_token
from tests.api.support import admin
from tests.support.gateway import RunningGateway
from tests.ui.test_operator_review import chat, make_key

KEYS = "/api/governance/virtual-keys"


def _log_in_as(page: Any, gateway: RunningGateway, who: str) -> None:
    page.goto("/ui/login")
    page.fill("input[name=token]", create_token(gateway, who)["value"])
    page.click("button[type=submit]")
    page.wait_for_load_state()


def _spend(gateway: RunningGateway) -> None:
    """Seven keys (more than the usage page stacks), the biggest spender deleted since."""
    for index in range(7):
        value = make_key(gateway, f"vk-role-{index}", f"role key {index}")
        for _ in range(index + 1):
            chat(gateway, value)
    with admin(gateway) as api:
        assert api.delete(f"{KEYS}/vk-role-6").status_code == 200


def test_a_viewer_sees_the_top_spenders_named_and_a_usage_reader_the_usage_page(page: Any,
                                                                                 gateway: RunningGateway) -> None:
    _spend(gateway)
    page.set_default_timeout(15_000)
    _log_in_as(page, gateway, "viewer")
    overview = page.goto("/ui/?range=24h")
    assert overview is not None and overview.status == 200
    spenders = page.inner_text("main")
    assert "role key 5" in spenders and "role key 4" in spenders
    assert page.locator(".deleted", has_text="vk-role-6").count() >= 1  # its spend stays, its name is gone
    usage = page.goto("/ui/usage?by=key&range=24h")
    assert usage is not None and usage.status == 200
    table = page.inner_text("table.usage")
    assert all(f"role key {index}" in table for index in range(6)) and "vk-role-6" in table
    page.context.clear_cookies()
    _log_in_as(page, gateway, "usage_reader")
    for by in ("key", "model"):
        reader = page.goto(f"/ui/usage?by={by}&range=24h")
        assert reader is not None and reader.status == 200, by
    assert "gpt-4o-mini" in page.inner_text("table.usage")
