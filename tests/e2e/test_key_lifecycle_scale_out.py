"""Key lifecycle across gateways, with real processes: rotations and expiry changes made
through one node reach every node through the change log (no restart), and each node
writes when its keys were last used, whichever node flushes the usage."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from tests.e2e.conftest import GatewayProcess, start_gateways
from tests.e2e.test_scale_out import api, chat, gateway_config, key, until
from tests.support.postgres import PostgresServer
from tests.support.redis_server import RedisServer

PROPAGATION_S = 2.0


@pytest.fixture(scope="module")
def nodes(postgres_server: PostgresServer, redis: RedisServer, mock_port: int,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    config = gateway_config(postgres_server.create_database(), redis.url, mock_port, "fail_closed")
    directory = tmp_path_factory.mktemp("lifecycle")
    started = [GatewayProcess(config, directory, f"node-{index}") for index in range(3)]
    try:
        start_gateways(started)
        yield started
    finally:
        for node in started:
            node.stop()


async def test_rotations_and_expiry_changes_bind_on_every_node(nodes: list[GatewayProcess]) -> None:
    async with aiohttp.ClientSession() as session:

        async def everywhere(value: str, status: int, code: str | None = None) -> bool:
            for node in nodes:
                got, body = await chat(session, node, value)
                if got != status or (code is not None and body["error"]["code"] != code):
                    return False
            return True

        original = key("rotating")
        await api(nodes[0], "POST", "/virtual-keys", {"id": "vk-rotating", "name": "rotating", "value": original})
        await until(lambda: everywhere(original, 200), PROPAGATION_S, "a created key")

        graced = (await api(nodes[1], "POST", "/virtual-keys/vk-rotating/rotate", {"grace_period": "1h"}))
        second = graced["virtual_key"]["value"]
        await until(lambda: everywhere(second, 200), PROPAGATION_S, "a rotated key's new value")
        assert await everywhere(original, 200)  # in its grace period on every node

        third = (await api(nodes[2], "POST", "/virtual-keys/vk-rotating/rotate", {}))["virtual_key"]["value"]
        await until(lambda: everywhere(third, 200), PROPAGATION_S, "the newest value")
        await until(lambda: everywhere(second, 401, "virtual_key_not_found"), PROPAGATION_S, "the value without grace")
        assert await everywhere(original, 401, "virtual_key_not_found")

        await api(nodes[0], "PATCH", "/virtual-keys/vk-rotating", {"expires_at": "2000-01-01T00:00:00Z"})
        await until(lambda: everywhere(third, 401, "virtual_key_expired"), PROPAGATION_S, "an expiry set in the past")
        await api(nodes[1], "PATCH", "/virtual-keys/vk-rotating", {"expires_at": None})
        await until(lambda: everywhere(third, 200), PROPAGATION_S, "an expiry removed")


async def test_last_used_at_is_written_by_the_node_that_served_the_key(nodes: list[GatewayProcess]) -> None:
    value = key("last-used")
    await api(nodes[0], "POST", "/virtual-keys", {"id": "vk-last-used", "name": "last used", "value": value})
    async with aiohttp.ClientSession() as session:

        async def served_by_the_last_node() -> bool:
            return (await chat(session, nodes[2], value))[0] == 200

        await until(served_by_the_last_node, PROPAGATION_S, "the key on the last node")

        async def written() -> bool:  # flush_interval 1s; only one node per interval writes counters
            view = (await api(nodes[0], "GET", "/virtual-keys/vk-last-used"))["virtual_key"]
            return view["last_used_at"] is not None

        await until(written, 5.0, "last_used_at")
