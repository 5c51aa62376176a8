"""Alerts through real gateways: three nodes sharing PostgreSQL and Redis deliver each
crossing once; the management API's webhooks and delivery log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from tests.alerts.conftest import SECRET
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.redis_server import RedisServer, require_redis
from tests.support.sdk_clients import openai_client
from tests.support.webhook_receiver import WebhookReceiver
from tollway.store.database import Database
from tollway.store.tables import AlertCrossing
from tollway.testing.mock_upstream import MockUpstream, start_mock_upstream

TOKEN = "alerts-admin-token-0123456789"
KEY = "tw-alerts-key-0123456789abcdefghijkl"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def mock() -> AsyncIterator[MockUpstream]:
    upstream = await start_mock_upstream()
    yield upstream
    await upstream.close()


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = require_redis()
    yield server
    server.stop()


def config(mock: MockUpstream, receiver: WebhookReceiver, requests: int = 4, **extra: Any) -> dict[str, Any]:
    return {
        "admin_token": TOKEN, "providers": mock_providers(mock.url),
        "governance": {"virtual_keys": [{"id": "vk-alerts", "name": "alerts test", "value": KEY, "rate_limit": {
            "request_max_limit": requests, "request_reset_duration": "1h"}}]},
        "alerts": {"webhooks": [{"url": receiver.url(), "secret": SECRET}], "check_interval": "1s"},
        **extra,
    }


async def chat(node: RunningGateway) -> None:
    client = openai_client(node.v1, KEY)
    await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, max_tokens=5)
    await client.close()


async def api(node: RunningGateway, method: str, path: str, body: Any = None,
              token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.request(
            method, node.url + path, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_three_gateways_sharing_a_database_and_redis_deliver_each_crossing_once(
        gateway, mock: MockUpstream, receiver: WebhookReceiver, redis: RedisServer, postgres_server) -> None:
    database_url = postgres_server.create_database()
    shared = {"database_url": database_url, "counters": {"backend": "redis", "url": redis.url}}
    nodes = [gateway(config(mock, receiver, **shared)) for _ in range(3)]
    for node in nodes[:2]:  # 2 of 4: 50 %
        await chat(node)
    [half] = await receiver.wait_for("/hook", 1, timeout_s=5)
    for node in nodes[1:]:  # 4 of 4: 100 % (80 % passed over between two looks)
        await chat(node)
    received = await receiver.wait_for("/hook", 2, timeout_s=5)
    await asyncio.sleep(2.5)  # every node has looked twice more: a duplicate would be here by now
    assert [r.json["threshold"] for r in receiver.received] == [0.5, 1.0]
    assert all(r.signed_with(SECRET) for r in received)
    assert half.json["id"] == "vk-alerts" and half.json["used"] + half.json["reserved"] >= 2
    db = Database(database_url)
    async with db.session() as session:
        claimed = (await session.scalars(select(AlertCrossing.threshold))).all()
    await db.close()
    assert sorted(claimed) == [0.5, 0.8, 1.0]
    status, log = await api(nodes[2], "GET", "/api/alerts/deliveries")
    assert status == 200 and log["count"] == 2
    assert {(d["status"], d["attempts"], d["webhook_id"]) for d in log["deliveries"]} == {("delivered", 1, "config-0")}


async def test_webhooks_through_the_api_secret_shown_once(gateway, mock, receiver: WebhookReceiver) -> None:
    node = gateway(config(mock, receiver))
    status, created = await api(node, "POST", "/api/alerts/webhooks", {"url": receiver.url("/api"), "name": "ops"})
    assert status == 201
    webhook = created["webhook"]
    assert webhook["secret"].startswith("whsec_") and len(webhook["secret"]) > 40
    status, given = await api(node, "POST", "/api/alerts/webhooks", {
        "url": receiver.url("/slack"), "secret": "given-secret-0123456789", "format": "slack",
        "events": ["threshold_crossed"]})
    assert status == 201 and given["webhook"]["secret"] == "given-secret-0123456789"

    status, listed = await api(node, "GET", "/api/alerts/webhooks")
    assert status == 200 and listed["count"] == 3
    assert (listed["webhooks"][0]["id"], listed["webhooks"][0]["source"]) == ("config-0", "config")
    assert all(w["secret"] is None for w in listed["webhooks"])
    status, one = await api(node, "GET", f"/api/alerts/webhooks/{webhook['id']}")
    assert status == 200 and one["webhook"]["secret"] is None and one["webhook"]["name"] == "ops"
    _, audit = await api(node, "GET", "/api/audit?entity_type=alert_webhook")
    assert audit["count"] == 2 and "secret-0123456789" not in str(audit) and webhook["secret"] not in str(audit)

    status, _ = await api(node, "DELETE", f"/api/alerts/webhooks/{webhook['id']}")
    assert status == 200
    assert (await api(node, "GET", f"/api/alerts/webhooks/{webhook['id']}"))[0] == 404
    assert (await api(node, "DELETE", f"/api/alerts/webhooks/{webhook['id']}"))[0] == 404
    status, body = await api(node, "DELETE", "/api/alerts/webhooks/config-0")
    assert status == 409 and "config file" in body["error"]["message"]


BAD_WEBHOOKS = [  # (body, the field the error names)
    ({"url": "ftp://example.com/hook"}, "url"),
    ({"url": "http://"}, "url"),
    ({"url": "http://127.0.0.1:99999/x"}, "url"),
    ({"url": "http://127.0.0.1/x", "events": []}, "events"),
    ({"url": "http://127.0.0.1/x", "events": ["budget_spent"]}, "events"),
    ({"url": "http://127.0.0.1/x", "events": ["threshold_crossed", "threshold_crossed"]}, "events"),
    ({"url": "http://127.0.0.1/x", "secret": "short"}, "secret"),
    ({"url": "http://127.0.0.1/x", "format": "teams"}, "format"),
    ({"url": "http://127.0.0.1/x", "surprise": 1}, "surprise"),
    ({}, "url"),
]


async def test_a_bad_webhook_is_refused_naming_the_field_and_nothing_is_written(
        gateway, mock, receiver: WebhookReceiver) -> None:
    node = gateway(config(mock, receiver))  # one gateway for the whole table: each start costs a second or two
    for body, field in BAD_WEBHOOKS:
        status, error = await api(node, "POST", "/api/alerts/webhooks", body)
        assert status == 422, (body, error)
        assert field in str(error["error"].get("field") or error["error"]["details"]), (body, error)
    assert (await api(node, "GET", "/api/alerts/webhooks"))[1]["count"] == 1
    _, audit = await api(node, "GET", "/api/audit?entity_type=alert_webhook")
    assert audit["count"] == 0


async def test_alert_routes_need_the_admin_token(gateway, mock, receiver: WebhookReceiver) -> None:
    node = gateway(config(mock, receiver))
    for method, path in (("GET", "/api/alerts/webhooks"), ("POST", "/api/alerts/webhooks"),
                         ("DELETE", "/api/alerts/webhooks/config-0"), ("GET", "/api/alerts/deliveries")):
        assert (await api(node, method, path, {"url": receiver.url()}, token=None))[0] == 401
        assert (await api(node, method, path, {"url": receiver.url()}, token=KEY))[0] == 403


async def test_delivery_log_lists_api_and_config_webhooks_deliveries(
        gateway, mock, receiver: WebhookReceiver) -> None:
    receiver.statuses["/broken"] = 500
    node = gateway(config(mock, receiver, requests=2, alerts={
        "webhooks": [{"url": receiver.url(), "secret": SECRET}], "check_interval": "1s", "max_attempts": 2,
        "retry_backoff": 0.05}))
    _, created = await api(node, "POST", "/api/alerts/webhooks", {"url": receiver.url("/broken")})
    await chat(node)  # 1 of 2: 50 %
    await receiver.wait_for("/broken", 2, timeout_s=6)
    for _ in range(100):
        _, log = await api(node, "GET", "/api/alerts/deliveries")
        if {d["status"] for d in log["deliveries"]} == {"delivered", "failed"}:
            break
        await asyncio.sleep(0.05)
    by_hook = {d["webhook_id"]: d for d in log["deliveries"]}
    assert log["count"] == 2
    assert by_hook["config-0"]["status"] == "delivered" and by_hook["config-0"]["response_status"] == 200
    failed = by_hook[created["webhook"]["id"]]
    assert (failed["status"], failed["attempts"], failed["last_error"]) == ("failed", 2, "HTTP 500: ok")
    assert failed["event"] == "threshold_crossed" and failed["entity_id"] == "vk-alerts"
    assert failed["payload"]["threshold"] == 0.5 and failed["created_at"].endswith("Z")
    _, only_failed = await api(node, "GET", "/api/alerts/deliveries?status=failed")
    assert only_failed["count"] == 1
    status, error = await api(node, "GET", "/api/alerts/deliveries?status=lost")
    assert status == 400 and error["error"]["field"] == "status"
