"""`/api/docs` and `/api/redoc` render in headless Chromium with every request outside the
gateway refused: their scripts and styles come from the gateway, not from a CDN."""

from __future__ import annotations

from typing import Any

from tests.support.gateway import RunningGateway
from tests.ui.conftest import LAPTOP, screenshot


def _offline(page: Any, gateway: RunningGateway) -> list[str]:
    """Refuse every request that does not go to the gateway; returns what was refused."""
    refused: list[str] = []

    def route(handled: Any) -> None:
        if handled.request.url.startswith(gateway.url + "/"):
            handled.continue_()
        else:
            refused.append(handled.request.url)
            handled.abort("internetdisconnected")

    page.route("**/*", route)
    return refused


def test_swagger_ui_renders_every_route_without_network(page: Any, gateway: RunningGateway) -> None:
    refused = _offline(page, gateway)
    page.goto("/api/docs")
    page.wait_for_selector(".swagger-ui .information-container .title", timeout=30_000)  # a wait bound, not a speed check
    assert "Tollway management API" in page.inner_text(".swagger-ui .information-container .title")
    page.wait_for_selector(".opblock-summary-path[data-path='/api/governance/virtual-keys']")
    assert page.locator(".opblock").count() > 20
    screenshot(page, "api-docs")
    assert refused == []


def test_redoc_renders_without_network(browser: Any, gateway: RunningGateway) -> None:
    context = browser.new_context(viewport=LAPTOP, base_url=gateway.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    refused = _offline(page, gateway)
    try:
        page.goto("/api/redoc")
        page.wait_for_selector("h1:has-text('Tollway management API')", timeout=30_000)  # a wait bound
        assert page.get_by_text("/api/governance/virtual-keys").count() > 0
    finally:
        context.close()
    assert refused == []
    # ReDoc's own logo (on its makers' CDN) is refused by the page's Content-Security-Policy
    assert [e for e in errors if "redoc.ly" not in e] == []


def test_docs_assets_are_served_by_the_gateway(gateway: RunningGateway) -> None:
    import httpx2

    for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css"), ("redoc.standalone.js", "javascript")):
        response = httpx2.get(f"{gateway.url}/api/docs/assets/{asset}", timeout=10)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    page = httpx2.get(f"{gateway.url}/api/docs", timeout=10).text
    assert "cdn." not in page and "/api/docs/assets/swagger-ui-bundle.js" in page
