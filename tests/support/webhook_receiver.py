"""A real webhook receiver for tests: an aiohttp server on 127.0.0.1 that records every
request, answers each path with a chosen status, optionally after a delay, and checks
Tollway's signature (``x-tollway-signature: t=<unix>,v1=<hmac-sha256 of "t.body">``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.support.gateway import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # the loop's monotonic time

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        """Whether the signature header is a valid HMAC-SHA256 of "t.body" under ``secret``."""
        parts = dict(part.split("=", 1) for part in self.headers.get("x-tollway-signature", "").split(","))
        expected = hmac.new(secret.encode(), f"{parts.get('t', '')}.".encode() + self.body, hashlib.sha256).hexdigest()
        return "t" in parts and parts["t"].isdigit() and hmac.compare_digest(parts.get("v1", ""), expected)


@dataclass
class WebhookReceiver:
    """Paths answer 200 unless ``statuses`` or ``delays`` (seconds) say otherwise."""

    port: int = field(default_factory=free_port)
    statuses: dict[str, int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    async def start(self) -> WebhookReceiver:
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        assert self._changed is not None
        async with self._changed:
            self.received.append(Received(request.path, dict(request.headers), body, asyncio.get_running_loop().time()))
            self._changed.notify_all()
        delay = self.delays.get(request.path)
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=self.statuses.get(request.path, 200), text="ok")

    async def wait_for(self, path: str, count: int, timeout_s: float = 5.0) -> list[Received]:
        """The requests to ``path`` once there are at least ``count`` (TimeoutError if never)."""
        assert self._changed is not None
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.at(path)) >= count), timeout_s)
        return self.at(path)
