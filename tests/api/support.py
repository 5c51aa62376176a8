"""Helpers of the management API tests: the mock upstream on its own thread, an admin
HTTP client, and gateway configs."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx2

from tests.support.gateway import RunningGateway, mock_providers
from tollway.testing.mock_upstream import MockUpstream, start_mock_upstream

T = TypeVar("T")

ADMIN_TOKEN = "admin-token-for-tests-0123456789"


class MockThread:
    """The mock upstream on a background event loop, so it can outlive one test's loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.mock: MockUpstream

    def start(self) -> MockThread:
        self._thread.start()
        self.mock = asyncio.run_coroutine_threadsafe(start_mock_upstream(), self._loop).result(10)
        return self

    @property
    def url(self) -> str:
        return self.mock.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.mock.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def gateway_config(database_url: str, mock_url: str, **extra: Any) -> dict[str, Any]:
    return {"database_url": database_url, "admin_token": ADMIN_TOKEN, "flush_interval": "1s",
            "providers": mock_providers(mock_url), "model_aliases": {"fast": "openai/gpt-4o-mini"}, **extra}


def admin(gateway: RunningGateway, token: str | None = ADMIN_TOKEN) -> httpx2.Client:
    """An HTTP client for the gateway's management API (``token`` None: no header)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    # A bound on waiting, not a speed check: a bulk create on PostgreSQL took over 15 s with
    # the suite on 4 workers on a loaded 2-core machine.
    return httpx2.Client(base_url=gateway.url, headers=headers, timeout=60)


def unique(prefix: str) -> str:
    """An id no other test in the module uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def eventually(probe: Callable[[], T], accept: Callable[[T], bool], timeout_s: float = 3.0) -> T:
    """``probe()`` until ``accept`` holds: for what the gateway finishes just after answering."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if accept(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


def error(response: httpx2.Response, status: int) -> dict[str, Any]:
    """The error object of an answer that must have ``status``."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def audit_of(api: httpx2.Client, entity_id: str) -> list[dict[str, Any]]:
    """The audit entries of one entity, newest first."""
    entries: list[dict[str, Any]] = api.get("/api/audit", params={"entity_id": entity_id}).json()["entries"]
    return entries
