"""Scoped admin tokens in the admin UI, in a real browser: logging in with one works; a
viewer sees every page but no edit button or form; a manager sees only its team's keys
and lands on them; a revoked token's session ends at the next page; the audit page
names the token that made a change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.admin_token_support import build_world, create_token
from tests.api.support import MockThread, admin, gateway_config
from tests.support.gateway import RunningGateway, start_gateway
from tests.ui.conftest import log_in, screenshot
from tollway.ui.session import Sessions

EDIT_FORMS = "main form[method=post]"  # the logout form sits in the header, not in main


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    running = start_gateway(gateway_config(f"sqlite:///{tmp_path_factory.mktemp('ui-tokens')}/t.db", upstream.url))
    build_world(running)
    yield running
    running.stop()


def _log_in_as(page: Any, gateway: RunningGateway, who: str, name: str | None = None) -> dict[str, Any]:
    token = create_token(gateway, who, name)
    page.goto("/ui/login")
    page.fill("input[name=token]", token["value"])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return token


def test_a_viewer_reads_everything_but_sees_no_edit_controls(page: Any, gateway: RunningGateway) -> None:
    _log_in_as(page, gateway, "viewer")
    assert page.url.endswith("/ui/")
    for path in ("/ui/keys", "/ui/keys/vk-ta", "/ui/teams", "/ui/teams/team-a", "/ui/customers/cust-a", "/ui/limits",
                 "/ui/audit"):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert page.locator(EDIT_FORMS).count() == 0, path
        assert page.get_by_role("link", name="New key").count() == 0
        assert page.get_by_role("link", name="Delete…").count() == 0
    page.goto("/ui/keys/vk-ta")
    assert "key of team A" in page.content()
    screenshot(page, "viewer-key")
    page.goto("/ui/keys/new")
    assert "cannot create keys" in page.content() and page.locator(EDIT_FORMS).count() == 0


def test_a_team_manager_sees_only_its_team(page: Any, gateway: RunningGateway) -> None:
    _log_in_as(page, gateway, "team_manager")
    page.wait_for_url("**/ui/keys")
    listed = page.inner_text("main")
    assert "key of team A" in listed
    assert not any(other in listed for other in ("key of team B", "key of cust A", "key of cust B"))
    assert [a.inner_text() for a in page.locator("nav a[href^='/ui/']").all()] == ["Virtual keys", "Teams", "Customers"]
    page.goto("/ui/teams")
    assert "Team A" in page.inner_text("main") and "Team B" not in page.inner_text("main")
    page.goto("/ui/keys/new")
    owners = page.locator("select[name=owner] option").all_inner_texts()
    assert any("Team A" in text for text in owners) and not any("Team B" in text for text in owners)
    outside = page.goto("/ui/keys/vk-tb")
    assert outside is not None and outside.status == 403
    screenshot(page, "manager-outside")
    page.goto("/ui/keys/vk-ta")
    assert page.locator(EDIT_FORMS).count() > 0  # a manager edits its own keys


def test_a_manager_creates_a_key_in_its_team_and_the_audit_names_its_token(page: Any, gateway: RunningGateway) -> None:
    token = _log_in_as(page, gateway, "team_manager", name="ui-manager")
    page.goto("/ui/keys/new")
    page.fill("form[action='/ui/keys'] input[name=name]", "made by the manager")
    page.select_option("select[name=owner]", "team:team-a")
    page.click("form[action='/ui/keys'] button[type=submit]")
    page.wait_for_load_state()
    assert "made by the manager" in page.content()
    with admin(gateway) as api:
        entries = api.get("/api/audit", params={"token_id": token["id"]}).json()["entries"]
    assert [e["action"] for e in entries] == ["create"]
    page.context.clear_cookies()
    log_in(page)  # the bootstrap admin reads the audit page
    page.goto(f"/ui/audit?token_id={token['id']}")
    row = page.inner_text("main table tbody")
    assert "ui-manager" in row and token["id"] in row and token["value"] not in page.content()


def test_a_revoked_tokens_session_ends_at_the_next_page(page: Any, gateway: RunningGateway) -> None:
    token = _log_in_as(page, gateway, "viewer")
    page.goto("/ui/keys")
    with admin(gateway) as api:
        assert api.delete(f"/api/admin-tokens/{token['id']}").status_code == 200
    page.goto("/ui/keys")
    page.wait_for_url("**/ui/login*")
    assert "no longer works" in page.content()


def test_a_scoped_session_cookie_carries_its_token_and_role_signed() -> None:
    sessions = Sessions("admin-token-0123456789")
    cookie, issued = sessions.issue("at-1234", "viewer")
    assert sessions.verify(cookie) == issued and (issued.token_id, issued.role) == ("at-1234", "viewer")
    expires, nonce, token_id, role, signature = cookie.split(".")
    for forged in (f"{expires}.{nonce}.{token_id}.admin.{signature}",  # a viewer promoting itself
                   f"{expires}.{nonce}.{signature}",  # dropping the token: the bootstrap admin's shape
                   f"{expires}.{nonce}.at-other.{role}.{signature}"):
        assert sessions.verify(forged) is None, forged
    plain, _ = sessions.issue()
    assert sessions.verify(plain) is not None and sessions.verify(plain).token_id is None  # type: ignore[union-attr]
