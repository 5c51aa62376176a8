"""Shadow limits (SPEC §8 ``mode: shadow``) through the real server: a shadow limit lets
every request through while the request log, the metrics, the usage and explain APIs say
what it would have denied; switched to ``enforce`` through the API, it binds on the next
request. Real server, real SQLite file, mock upstream, the official openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import openai
import pytest

from tests.api.support import MockThread, admin, eventually, gateway_config, unique
from tests.api.test_enforcement import chat, denial, explain, new_key, usage_of
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.redis_server import require_redis

KEYS = "/api/governance/virtual-keys"
TINY_BUDGET = {"max_limit": 0.000001, "reset_duration": "1d"}  # one micro-dollar: the first request crosses it


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    url = f"sqlite:///{tmp_path_factory.mktemp('shadow')}/tollway.db"
    running = start_gateway(gateway_config(url, upstream.url))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def redis_gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    """A gateway whose counters live in a real Redis."""
    redis = require_redis()
    url = f"sqlite:///{tmp_path_factory.mktemp('shadow-redis')}/tollway.db"
    running = start_gateway(gateway_config(url, upstream.url, counters={"backend": "redis", "url": redis.url}))
    yield running
    running.stop()
    redis.stop()


def would_be_denials(api: httpx2.Client, count: int, **query: Any) -> list[dict[str, Any]]:
    page = eventually(lambda: api.get("/api/logs", params={"would_deny": "true", **query}).json(),
                      lambda page: page["count"] >= count)
    return page["logs"]


def would_deny_total(gateway: RunningGateway, level: str, reason: str) -> float:
    text = httpx2.get(f"{gateway.url}/metrics", timeout=10).text
    line = f'tollway_would_deny_total{{level="{level}",reason="{reason}"}} '
    return next((float(row[len(line):]) for row in text.splitlines() if row.startswith(line)), 0.0)


def test_a_crossed_shadow_budget_lets_every_request_through_and_logs_what_it_would_have_denied(
        gateway: RunningGateway, api: httpx2.Client) -> None:
    before = would_deny_total(gateway, "virtual_key", "budget_exceeded")
    key = new_key(api, budget={**TINY_BUDGET, "mode": "shadow"})
    assert key["budget"]["mode"] == "shadow"

    replies = [chat(gateway, key["value"]) for _ in range(3)]

    assert all(reply.usage.completion_tokens == 5 for reply in replies)  # 200s, nothing clamped
    rows = would_be_denials(api, 2, virtual_key_id=key["id"])
    assert len(rows) >= 2 and all(row["status"] == 200 and row["decision"] == "allow" for row in rows)
    assert {(row["would_deny"], row["would_deny_level"], row["would_deny_id"]) for row in rows} == {
        ("budget_exceeded", "virtual_key", key["id"])}
    assert usage_of(api, key["id"])["budget"]["used"] > 0.000001  # spent beyond it: its counter is real
    assert usage_of(api, key["id"])["budget"]["mode"] == "shadow"
    assert would_deny_total(gateway, "virtual_key", "budget_exceeded") - before == len(rows)
    untouched = api.get("/api/logs", params={"would_deny": "false", "virtual_key_id": key["id"]}).json()
    assert untouched["count"] + len(rows) == 3


def test_switching_a_shadow_limit_to_enforce_binds_on_the_next_request(gateway: RunningGateway,
                                                                       api: httpx2.Client) -> None:
    key = new_key(api, rate_limit={"request_max_limit": 1, "request_reset_duration": "1h", "mode": "shadow"})
    chat(gateway, key["value"])
    chat(gateway, key["value"])  # over the limit: still answered

    switched = api.put(f"{KEYS}/{key['id']}", json={"rate_limit": {"mode": "enforce"}}).json()["virtual_key"]
    error = denial(gateway, key["value"], 429)

    assert switched["rate_limit"]["mode"] == "enforce" and switched["rate_limit"]["request_current_usage"] == 2
    assert error["type"] == "request_limited" and error["scope"]["id"] == key["id"]
    back = api.put(f"{KEYS}/{key['id']}", json={"rate_limit": {"mode": "shadow"}}).json()["virtual_key"]
    assert back["rate_limit"]["mode"] == "shadow"
    chat(gateway, key["value"])  # and back in shadow, through again


def test_an_enforced_limit_still_binds_beside_a_shadow_one_and_explain_tells_them_apart(
        gateway: RunningGateway, api: httpx2.Client) -> None:
    team = api.post("/api/governance/teams", json={"id": unique("team"), "name": "shadowed team",
                                                   "budget": {**TINY_BUDGET, "mode": "shadow"}}).json()["team"]
    key = new_key(api, team_id=team["id"], rate_limit={"request_max_limit": 2, "request_reset_duration": "1h"})
    chat(gateway, key["value"])

    explained = explain(api, virtual_key_id=key["id"])
    chat(gateway, key["value"])
    error = denial(gateway, key["value"], 429)

    assert explained["decision"] == "allow" and explained["message"].startswith("would deny in shadow")
    assert explained["would_deny"]["level"] == "team" and explained["would_deny"]["id"] == team["id"]
    modes = {(limit["level"], limit["kind"]): (limit["mode"], limit["binding"]) for limit in explained["limits"]}
    assert modes[("team", "budget")] == ("shadow", False) and modes[("virtual_key", "requests")] == ("enforce", True)
    assert error["scope"]["level"] == "virtual_key"  # the enforced limit, not the crossed shadow budget
    rows = would_be_denials(api, 2, would_deny_level="team", would_deny_id=team["id"])
    assert [row["status"] for row in rows] == [200, 200]  # the denied request is logged as a denial, not here


def test_a_shadow_concurrency_limit_never_refuses_nor_queues(gateway: RunningGateway, api: httpx2.Client,
                                                             upstream: MockThread) -> None:
    key = new_key(api, concurrency={"max_in_flight": 1, "queue_timeout_ms": 0, "mode": "shadow"})
    client = openai.OpenAI(base_url=gateway.v1, api_key=key["value"], max_retries=0)

    def slow_stream() -> int:
        stream = client.chat.completions.create(model="openai/gpt-4o-mini", stream=True, max_tokens=40,
                                                messages=[{"role": "user", "content": "Say hello"}])
        return sum(1 for _ in stream)

    with ThreadPoolExecutor(4) as pool:
        chunks = list(pool.map(lambda _: slow_stream(), range(4)))

    assert all(count > 0 for count in chunks)
    assert usage_of(api, key["id"])["in_flight"]["reserved"] == 0  # every slot given back
    assert usage_of(api, key["id"])["in_flight"]["mode"] == "shadow"


@pytest.mark.parametrize("path, body, envelope", [
    ("/api/governance/teams", {"name": "t"}, "team"),
    ("/api/governance/customers", {"name": "c"}, "customer"),
    (KEYS, {"name": "k"}, "virtual_key"),
])
def test_every_entity_kind_stores_and_shows_the_mode_of_each_limit(api: httpx2.Client, path: str,
                                                                   body: dict[str, Any], envelope: str) -> None:
    limits = {"budget": {**TINY_BUDGET, "mode": "shadow"},
              "rate_limit": {"request_max_limit": 5, "request_reset_duration": "1m", "mode": "shadow"},
              "concurrency": {"max_in_flight": 3, "mode": "shadow"}}
    created = api.post(path, json={"id": unique(envelope), **body, **limits})
    assert created.status_code == 201, created.text
    entity = created.json()[envelope]
    assert [entity[which]["mode"] for which in limits] == ["shadow"] * 3
    changed = api.put(f"{path}/{entity['id']}", json={"budget": {"max_limit": 2}}).json()[envelope]
    assert changed["budget"]["mode"] == "shadow"  # a partial update keeps the mode it does not state
    enforced = api.put(f"{path}/{entity['id']}", json={which: {"mode": "enforce"} for which in limits}).json()[envelope]
    assert [enforced[which]["mode"] for which in limits] == ["enforce"] * 3


def test_model_configs_and_providers_take_the_mode_too(api: httpx2.Client) -> None:
    model = api.post("/api/governance/model-configs", json={
        "model_name": unique("model"), "budget": {**TINY_BUDGET, "mode": "shadow"}}).json()["model_config"]
    provider = api.put("/api/providers/anthropic", json={
        "rate_limit": {"request_max_limit": 5, "request_reset_duration": "1m", "mode": "shadow"}}).json()["provider"]
    assert model["budget"]["mode"] == "shadow" and provider["rate_limit"]["mode"] == "shadow"
    assert api.put("/api/providers/anthropic", json={"rate_limit": None}).status_code == 200


def test_a_limit_without_a_mode_is_enforced_and_bad_modes_are_refused_naming_the_field(api: httpx2.Client) -> None:
    key = new_key(api, budget=TINY_BUDGET)
    assert key["budget"]["mode"] == "enforce"
    bad = {"id": unique("vk"), "name": "bad", "budget": {**TINY_BUDGET, "mode": "observe"}}
    response = api.post(KEYS, json=bad)
    assert response.status_code in (400, 422) and "mode" in response.text
    assert api.get(f"{KEYS}/{bad['id']}").status_code == 404  # nothing written
    for which, limit in (("budget", {"mode": None}), ("rate_limit", {"mode": None})):
        response = api.put(f"{KEYS}/{key['id']}", json={which: limit})
        assert response.status_code in (400, 422) and "mode" in response.text, (which, response.text)


def test_shadow_limits_count_and_switch_the_same_on_redis_counters(redis_gateway: RunningGateway) -> None:
    with admin(redis_gateway) as api:
        key = new_key(api, rate_limit={"request_max_limit": 1, "request_reset_duration": "1h", "mode": "shadow"},
                      concurrency={"max_in_flight": 1, "mode": "shadow"})
        for _ in range(3):
            chat(redis_gateway, key["value"])
        rows = would_be_denials(api, 2, virtual_key_id=key["id"])
        assert {row["would_deny"] for row in rows} == {"request_limited"} and len(rows) == 2
        usage = usage_of(api, key["id"])
        assert usage["requests"]["used"] == 3 and usage["in_flight"]["reserved"] == 0

        api.put(f"{KEYS}/{key['id']}", json={"rate_limit": {"mode": "enforce"}}).raise_for_status()
        assert denial(redis_gateway, key["value"], 429)["type"] == "request_limited"
