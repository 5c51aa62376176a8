"""The official SDKs' async clients for tests, each closed when its test ends, on the test's
own event loop (the `close_sdk_clients` fixture in tests/integration and tests/alerts).

Why not let a dropped client close itself: the openai and anthropic async clients close on
garbage collection by scheduling ``aclose()`` on whatever event loop is running in the
thread that collects them. A test gateway runs in a thread of the test process with a loop
of its own, so that thread can be the collector: the client's sockets, registered with the
test's loop, were then torn down from the gateway's thread, and a stale file descriptor
number unregistered a newer connection of the test's loop. Its response arrived and was
never read: the 60-second hangs of the request that followed (seen in CI as timeouts of
the SDKs and of aiohttp, on about one run in five under load).
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai

_open: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []  # AsyncAzureOpenAI is an AsyncOpenAI


def openai_client(base_url: str, api_key: str, **options: Any) -> openai.AsyncOpenAI:
    """An ``openai.AsyncOpenAI`` with no retries (a test sees the first answer), closed at the test's end."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, **{"max_retries": 0, **options})
    _open.append(client)
    return client


def azure_client(endpoint: str, api_key: str, api_version: str, **options: Any) -> openai.AsyncAzureOpenAI:
    """An ``openai.AsyncAzureOpenAI`` with no retries, closed at the test's end."""
    client = openai.AsyncAzureOpenAI(azure_endpoint=endpoint, api_key=api_key, api_version=api_version,
                                     **{"max_retries": 0, **options})
    _open.append(client)
    return client


def anthropic_client(base_url: str, api_key: str, **options: Any) -> anthropic.AsyncAnthropic:
    """An ``anthropic.AsyncAnthropic`` with no retries, closed at the test's end."""
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key=api_key, **{"max_retries": 0, **options})
    _open.append(client)
    return client


async def close_all() -> None:
    """Close every client made since the last call (closing one already closed does nothing)."""
    while _open:
        await _open.pop().close()
