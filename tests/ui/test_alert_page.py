"""The alerts page in a real browser: webhooks without their secrets, and the delivery
log with each delivery's status, attempts and last error."""

from __future__ import annotations

import time
from typing import Any

from tests.api.support import admin
from tests.support.gateway import RunningGateway, free_port
from tests.ui.conftest import log_in, screenshot
from tests.ui.test_pages import chat, make_key


def test_alerts_page_lists_webhooks_and_deliveries_with_their_errors(page: Any, gateway: RunningGateway) -> None:
    down = f"http://127.0.0.1:{free_port()}/alerts"  # nothing listens: the delivery fails and is retried
    with admin(gateway) as api:
        created = api.post("/api/alerts/webhooks", json={"url": down, "name": "on-call"}).json()["webhook"]
    value = make_key(gateway, "alerted", rate_limit={"request_max_limit": 2, "request_reset_duration": "1h"})
    chat(gateway, value, "openai/gpt-4o-mini")  # 1 of 2: 50 %
    with admin(gateway) as api:
        deadline = time.monotonic() + 8  # the monitor looks every 5 s by default
        while not (rows := api.get("/api/alerts/deliveries").json()["deliveries"]) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert rows and rows[0]["webhook_id"] == created["id"]

    log_in(page)
    page.click("nav a:has-text('Alerts')")
    page.wait_for_url("**/ui/alerts")
    assert created["secret"] not in page.content()
    assert "on-call" in page.inner_text("table.webhooks")
    delivery = page.inner_text("table.deliveries tbody tr")
    assert "threshold crossed 50%" in delivery and "alerted" in delivery and down in delivery
    assert "ClientConnectorError" in delivery and "retrying" in delivery
    screenshot(page, "alerts")
    page.select_option("select[name=status]", "delivered")
    page.click("form.filters button[type=submit]")
    assert "No delivery matches these filters" in page.inner_text("main")
