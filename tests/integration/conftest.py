"""Integration fixtures: the real mock upstream on a free port (`gateway`, which starts real
gateways from config dicts, comes from tests/support/fixtures.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.support import sdk_clients
from tests.support.gateway import RunningGateway, mock_providers
from tollway.testing.mock_upstream import MockUpstream, start_mock_upstream


@pytest.fixture(autouse=True)
async def close_sdk_clients() -> AsyncIterator[None]:
    """Every SDK client a test made is closed on the test's own loop (tests/support/sdk_clients.py says why)."""
    yield
    await sdk_clients.close_all()


@pytest.fixture
async def mock() -> AsyncIterator[MockUpstream]:
    upstream = await start_mock_upstream()
    yield upstream
    await upstream.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def oai(mock: MockUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    """The `openai` SDK pointed at the mock upstream itself (no gateway)."""
    async with sdk_clients.openai_client(mock.url + "/v1", "sk-test") as client:
        yield client


@pytest.fixture
def proxied(gateway, mock) -> RunningGateway:
    """A gateway in front of the mock with openai, anthropic and azure providers."""
    return gateway({"providers": mock_providers(mock.url), "model_aliases": {"fast": "openai/gpt-4o-mini"}})


async def mock_control(mock: MockUpstream, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as session, session.request(method, mock.url + path, json=body) as response:
        response.raise_for_status()
        return await response.json()
