"""A gateway with more keys than it loads at start (`virtual_key_cache.load_all_up_to`)
loads each key when first presented: governance binds exactly as with every key loaded
(the key's own limits, its team's, blocking through the API), and unknown keys get 401
while reaching the database in batches, not once per request."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp
import openai
import pytest

from tests.integration.test_governance import HELLO, config, key, post_raw, sdk
from tests.support.gateway import RunningGateway
from tollway.governance.engine import hash_key

KEY_A = "tw-demand-a-0123456789abcdefghijklmn"
KEY_B = "tw-demand-b-0123456789abcdefghijklmn"
ADMIN = "admin-token-0123456789abcdef"
BODY = {"model": "openai/gpt-4o-mini", "messages": HELLO}


def on_demand(gateway, mock) -> RunningGateway:
    return gateway(config(
        mock, enforce_virtual_keys=True, admin_token=ADMIN, virtual_key_cache={"load_all_up_to": 0},
        governance={"teams": [{"id": "t", "name": "team", "rate_limit": {"request_max_limit": 5,
                                                                         "request_reset_duration": "1h"}}]},
        keys=[key(KEY_A, id="vk-a", rate_limit={"request_max_limit": 3, "request_reset_duration": "1h"}),
              key(KEY_B, id="vk-b", team_id="t")]))


async def statuses(gateway: RunningGateway, value: str, count: int) -> list[int]:
    return [(await post_raw(gateway, BODY, {"Authorization": f"Bearer {value}"}))[0] for _ in range(count)]


async def api(gateway: RunningGateway, method: str, path: str, body: Any = None) -> int:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{gateway.url}/api/governance{path}", json=body,
            headers={"Authorization": f"Bearer {ADMIN}"}) as response:
        return response.status


async def test_keys_load_when_presented_and_their_own_and_team_limits_bind_exactly(gateway, mock) -> None:
    running = on_demand(gateway, mock)
    assert running.runtime.key_cache is not None
    assert len(running.runtime.snapshot.keys_by_hash) == 0  # nothing loaded at start
    reply = await sdk(running, KEY_A).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert reply.choices
    assert await statuses(running, KEY_A, 3) == [200, 200, 429]  # its own limit: 3 an hour
    assert await statuses(running, KEY_B, 6) == [200] * 5 + [429]  # its team's: 5 an hour


async def test_changes_through_the_api_bind_on_keys_loaded_on_demand(gateway, mock) -> None:
    running = on_demand(gateway, mock)
    value = "tw-demand-new-0123456789abcdefghijk"
    assert await statuses(running, value, 1) == [401]  # remembered as unknown now
    assert await api(running, "POST", "/virtual-keys", {"id": "vk-new", "name": "new", "value": value}) == 201
    assert await statuses(running, value, 1) == [200]  # the change drops it from the unknown ones at once
    assert await api(running, "PATCH", "/virtual-keys/vk-new", {"is_active": False}) == 200
    assert await statuses(running, value, 1) == [403]  # the held key is updated by the change
    assert await api(running, "DELETE", "/virtual-keys/vk-new") == 200
    assert await statuses(running, value, 1) == [401]


async def test_a_flood_of_unknown_keys_gets_401_and_reaches_the_database_in_batches(gateway, mock) -> None:
    running = on_demand(gateway, mock)
    cache = running.runtime.key_cache
    values = [f"tw-flood-{secrets.token_hex(12)}" for _ in range(300)]
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(value: str) -> int:
            async with session.post(running.v1 + "/chat/completions", json=BODY,
                                    headers={"Authorization": f"Bearer {value}"}) as response:
                return response.status

        results = await asyncio.gather(*(one(value) for value in values * 2))
    assert set(results) == {401}
    assert cache.hashes_looked_up <= 300  # each distinct key at most once, however often presented
    assert cache.queries < 300 // 2  # coalesced: far fewer queries than keys
    assert hash_key(values[0]) not in running.runtime.snapshot.keys_by_hash
    with pytest.raises(openai.AuthenticationError):
        await sdk(running, values[0]).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert cache.hashes_looked_up <= 300


async def test_a_rotated_keys_old_value_is_found_on_demand_through_its_grace_period(gateway, mock) -> None:
    running = on_demand(gateway, mock)
    old = "tw-demand-rotated-0123456789abcdefg"
    assert await api(running, "POST", "/virtual-keys", {"id": "vk-rot", "name": "rotated", "value": old}) == 201
    async with aiohttp.ClientSession() as session, session.post(
            f"{running.url}/api/governance/virtual-keys/vk-rot/rotate", json={"grace_period": "1h"},
            headers={"Authorization": f"Bearer {ADMIN}"}) as response:
        assert response.status == 200, await response.text()
        new = (await response.json())["virtual_key"]["value"]
    assert hash_key(old) not in running.runtime.snapshot.keys_by_hash  # never presented: not held
    assert await statuses(running, old, 1) == [200]  # found by the value the rotation replaced
    assert await statuses(running, new, 1) == [200]


async def test_every_route_that_identifies_a_key_loads_it_on_demand(gateway, mock) -> None:
    running = on_demand(gateway, mock)
    third = "tw-demand-media-0123456789abcdefghij"
    assert await api(running, "POST", "/virtual-keys", {"id": "vk-media", "name": "media", "value": third}) == 201
    assert not running.runtime.snapshot.keys_by_hash  # none presented yet: none held
    models = await sdk(running, KEY_A).models.list()  # /v1/models
    assert models.data
    async with aiohttp.ClientSession() as session, session.get(
            running.v1 + "/tollway/key", headers={"Authorization": f"Bearer {KEY_B}"}) as response:  # key info
        assert response.status == 200, await response.text()
        assert (await response.json())["id"] == "vk-b"
    moderation = await sdk(running, third).moderations.create(model="openai/omni-moderation-latest", input="hi")
    assert moderation.results  # a media route
    assert await statuses(running, "tw-demand-nobody-0123456789abcdefgh", 1) == [401]
