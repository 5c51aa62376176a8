"""Each route's traffic in the UI: the request log's route column and filter, and the usage
page per route (real browser, real gateway, requests sent with the `openai` SDK)."""

from __future__ import annotations

from typing import Any

import openai

from tests.support.gateway import RunningGateway
from tests.ui.conftest import log_in
from tests.ui.test_operator_review import chat, make_key


def test_the_request_log_and_usage_show_each_routes_traffic(page: Any, gateway: RunningGateway) -> None:
    value = make_key(gateway, "vk-routes", "routes key")
    chat(gateway, value)
    client = openai.OpenAI(base_url=gateway.v1, api_key=value, max_retries=0, timeout=10)
    client.moderations.create(model="openai/omni-moderation-latest", input="hello")
    client.audio.speech.create(model="openai/tts-1", voice="alloy", input="hello")
    log_in(page)

    page.goto("/ui/logs?virtual_key_id=vk-routes")
    routes = page.locator("table.log tbody tr:not(.why) td[data-label=Route]").all_inner_texts()
    assert sorted(routes) == ["audio.speech", "chat", "moderations"]
    page.click("table.log td[data-label=Route] a:text-is('moderations')")
    page.wait_for_url("**/ui/logs?route=moderations")
    assert page.input_value("input[name=route]") == "moderations"
    assert set(page.locator("table.log tbody tr:not(.why) td[data-label=Route]").all_inner_texts()) == {"moderations"}

    page.goto("/ui/usage?by=route&virtual_key_id=vk-routes")
    groups = page.locator("table.usage tbody td[data-label=Route]").all_inner_texts()
    assert sorted(groups) == ["audio.speech", "chat", "moderations"]
