"""End users through the real server: named with the openai SDK's ``user=``, the anthropic
SDK's ``metadata={"user_id": …}`` or the ``x-tollway-user`` header; limited by the
templates of their key, team and customer; recorded in the request log."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from sqlalchemy import select

from tests.integration.conftest import mock_control
from tests.integration.test_governance import HELLO, config, key, post_raw, sdk
from tests.support.gateway import RunningGateway
from tests.support.sdk_clients import anthropic_client
from tollway.server.services import Services
from tollway.store.tables import RequestLog

KEY = "tw-end-users-0123456789abcdefghijkl"
STRICT_KEY = "tw-end-users-strict-0123456789abcd"
MODEL = "openai/gpt-4o-mini"


def governed(mock, **key_fields: Any) -> dict[str, Any]:
    """Key KEY of team t: two requests a minute per end user (the team's template)."""
    return config(mock, governance={
        "teams": [{"id": "t", "name": "Team", "end_user_limits": {
            "rate_limit": {"request_max_limit": 2, "request_reset_duration": "1m"}}}],
        "virtual_keys": [key(KEY, team_id="t", **key_fields),
                         key(STRICT_KEY, id="strict", team_id="t",
                             end_user={"source": ["header"], "required": True})],
    })


def claude(gateway: RunningGateway, value: str) -> anthropic.AsyncAnthropic:
    return anthropic_client(gateway.url, value)


async def logged(gateway: RunningGateway) -> list[tuple[str | None, int]]:
    async def rows() -> list[tuple[str | None, int]]:
        await gateway.runtime.log_writer.flush()
        async with gateway.runtime.db.session() as session:
            result = await session.execute(select(RequestLog.end_user, RequestLog.status).order_by(RequestLog.id))
            return [tuple(row) for row in result.all()]
    return gateway.call(rows())


async def test_each_end_user_named_by_the_openai_sdk_gets_their_own_limit(gateway, mock) -> None:
    running = gateway(governed(mock))
    client = sdk(running, KEY)
    for _ in range(2):
        await client.chat.completions.create(model=MODEL, messages=HELLO, user="alice")
    with pytest.raises(openai.RateLimitError) as denied:
        await client.chat.completions.create(model=MODEL, messages=HELLO, user="alice")
    error = denied.value.body
    assert error["type"] == "request_limited"
    assert error["scope"]["level"] == "end_user" and error["scope"]["id"] == "alice"
    # Another end user of the same key, and the same key's embeddings for another, are untouched.
    await client.chat.completions.create(model=MODEL, messages=HELLO, user="bob")
    await client.embeddings.create(model="openai/text-embedding-3-small", input="hi", user="carol")
    assert [user for user, _ in await logged(running)] == ["alice", "alice", "alice", "bob", "carol"]


async def test_the_header_and_anthropics_metadata_name_the_same_end_user(gateway, mock) -> None:
    running = gateway(governed(mock))
    await claude(running, KEY).messages.create(model="anthropic/claude-3-5-haiku-latest", max_tokens=16,
                                               messages=HELLO, metadata={"user_id": "dana"})
    await sdk(running, KEY).chat.completions.create(model=MODEL, messages=HELLO,
                                                    extra_headers={"x-tollway-user": "dana"})
    with pytest.raises(openai.RateLimitError):  # one user, whichever way they were named
        await sdk(running, KEY).chat.completions.create(model=MODEL, messages=HELLO, user="dana")
    assert [user for user, _ in await logged(running)] == ["dana", "dana", "dana"]


async def test_a_key_that_trusts_only_the_header_ignores_the_body_and_may_require_one(gateway, mock) -> None:
    running = gateway(governed(mock))
    body = {"model": MODEL, "messages": HELLO, "user": "mallory"}
    status, _, payload = await post_raw(running, body, {"x-tollway-vk": STRICT_KEY})
    assert status == 400 and payload["error"]["param"] == "x-tollway-user"
    assert "requires an end user" in payload["error"]["message"]
    # A client that changes its body's user on every request stays one end user under the header.
    for index in range(2):
        status, _, _ = await post_raw(running, {**body, "user": f"m{index}"},
                                      {"x-tollway-vk": STRICT_KEY, "x-tollway-user": "erin"})
        assert status == 200
    status, _, payload = await post_raw(running, {**body, "user": "m3"},
                                        {"x-tollway-vk": STRICT_KEY, "x-tollway-user": "erin"})
    assert status == 429 and payload["error"]["scope"]["id"] == "erin"


@pytest.mark.parametrize(("body_user", "headers", "param"), [
    (123, {}, "user"),
    ("", {}, "user"),
    ("x" * 257, {}, "user"),
    ("ok\u0000", {}, "user"),
    ("alice", {"x-tollway-user": "bob"}, "user"),  # two places, two end users
], ids=["not-a-string", "empty", "too-long", "control-character", "conflicting"])
async def test_an_unusable_end_user_is_a_400_naming_the_field(gateway, mock, body_user, headers, param) -> None:
    running = gateway(governed(mock))
    status, _, payload = await post_raw(running, {"model": MODEL, "messages": HELLO, "user": body_user},
                                        {"x-tollway-vk": KEY, **headers})
    assert status == 400 and payload["error"]["param"] == param
    assert await mock_requests(mock) == 0  # nothing forwarded


async def mock_requests(mock) -> int:
    return len(await mock_control(mock, "GET", "/_mock/requests"))


async def test_an_evicted_end_user_is_read_back_by_the_running_gateway(gateway, mock) -> None:
    now = [1_790_000_000_000]
    cfg = config(mock, governance={
        "teams": [{"id": "t", "name": "Team", "end_user_limits": {
            "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1d"}}}],
        "virtual_keys": [key(KEY, team_id="t")]})
    running = gateway(cfg, Services(clock_ms=lambda: now[0]))
    client = sdk(running, KEY)
    for _ in range(2):
        await client.chat.completions.create(model=MODEL, messages=HELLO, user="hank")
    now[0] += 2 * 3_600_000  # idle for longer than counters.end_user_idle (1h)
    assert running.call(running.runtime.evict_idle_end_users()) == 1  # hank's request counter
    assert not any(":hank" in name for name in running.call(running.runtime.store.export()))
    await client.chat.completions.create(model=MODEL, messages=HELLO, user="hank")  # the third of three
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=MODEL, messages=HELLO, user="hank")
