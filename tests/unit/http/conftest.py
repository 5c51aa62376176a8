"""Fixtures for the native HTTP client's tests: every test runs on asyncio's own loop and
on uvloop (the gateway's loop), whose transports differ in the details that matter here
(EOF, pause/resume, abort), and gets a client that is always closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvloop

from tollway.providers.http import HTTPClient


@pytest.fixture(params=["asyncio", "uvloop"], scope="session")
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    return uvloop.EventLoopPolicy() if request.param == "uvloop" else asyncio.DefaultEventLoopPolicy()


@pytest.fixture
async def client() -> AsyncIterator[HTTPClient]:
    http = HTTPClient(connect_timeout=2.0)
    yield http
    await http.close()
