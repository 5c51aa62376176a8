"""The usage page over more groups than it stacks: the five largest in their own colours,
the rest as "other", every bar adding up to every request, and every group in the table
(drawn from the top groups' own series and the total, not a row per group and bucket)."""

from __future__ import annotations

import re
from typing import Any

from tests.support.gateway import RunningGateway
from tests.ui.conftest import log_in
from tests.ui.test_operator_review import chat, make_key
from tollway.ui.pages.usage import STACKED


def test_more_groups_than_stacked_add_up_with_the_rest_as_other(page: Any, gateway: RunningGateway) -> None:
    sent = {}
    for index in range(STACKED + 2):
        value = make_key(gateway, f"vk-many-{index}", f"many {index}")
        sent[f"many {index}"] = index + 1
        for _ in range(index + 1):
            chat(gateway, value)
    page.set_default_timeout(15_000)  # the page asks the API for each top group: allow a busy machine
    log_in(page)
    page.goto("/ui/usage?by=key&range=24h")
    requests_chart = page.locator("svg.chart").nth(2)
    totals = [int(re.sub(r"\D", "", title.split(": ")[-1]) or 0)
              for title in requests_chart.locator("title").evaluate_all("titles => titles.map(t => t.textContent)")]
    assert sum(totals) == sum(sent.values())
    assert requests_chart.locator(f"rect.series{STACKED}").count() >= 1  # "other": the two smallest keys
    legend = page.inner_text(".chart-legend")
    assert all(f"many {index}" in legend for index in range(2, STACKED + 2)) and "many 0" not in legend
    table = page.inner_text("table.usage")
    assert all(name in table for name in sent)
