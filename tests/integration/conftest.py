"""Integration fixtures: the real mock upstream and the real gateway on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.gateway import RunningGateway, mock_providers, start_gateway
from tollway.testing.mock_upstream import MockUpstream, start_mock_upstream


@pytest.fixture
async def mock() -> AsyncIterator[MockUpstream]:
    upstream = await start_mock_upstream()
    yield upstream
    await upstream.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., RunningGateway]]:
    """Start gateways from config dicts; each gets its own SQLite file unless given one."""
    running: list[RunningGateway] = []

    def start(config: dict[str, Any]) -> RunningGateway:
        config = {"database_url": f"sqlite:///{tmp_path}/gateway-{len(running)}.db", "flush_interval": "1s", **config}
        started = start_gateway(config)
        running.append(started)
        return started

    yield start
    for started in running:
        started.stop()


@pytest.fixture
def proxied(gateway, mock) -> RunningGateway:
    """A gateway in front of the mock with openai, anthropic and azure providers."""
    return gateway({"providers": mock_providers(mock.url), "model_aliases": {"fast": "openai/gpt-4o-mini"}})


async def mock_control(mock: MockUpstream, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, mock.url + path, json=body) as response:
            response.raise_for_status()
            return await response.json()
