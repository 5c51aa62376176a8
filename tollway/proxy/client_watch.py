"""Noticing a client that hangs up while the gateway waits on the upstream.

A streamed response has its own watcher once it is relayed (see `relay`); this one
covers the wait before: the whole answer of a non-streamed request, or the first bytes
of a streamed one. When the client goes, the waiting task is cancelled, which closes
the upstream connection (the provider stops generating) and frees the reservation.

Most answers come within a second, so the watch is armed only after ``grace_s``: until
then it costs one timer (≈1 µs), not a task per request.
"""

from __future__ import annotations

import asyncio

from tollway.asgi import Receive


class ClientWatch:
    """Use as ``with ClientWatch(receive) as watch:`` around the upstream wait, and
    check `client_left` when a `CancelledError` comes out of it."""

    __slots__ = ("_grace_s", "_receive", "_task", "_timer", "_watcher", "client_left")

    def __init__(self, receive: Receive, grace_s: float = 1.0) -> None:
        self._receive = receive
        self._grace_s = grace_s
        self._task: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task | None = None
        self.client_left = False

    def __enter__(self) -> ClientWatch:
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_later(self._grace_s, self._arm)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()

    def absorb(self) -> bool:
        """After a `CancelledError`: True when it was this watch's doing (the client left),
        in which case the task's cancellation is withdrawn so it may finish its books."""
        if not self.client_left:
            return False
        if self._task is not None:
            self._task.uncancel()
        return True

    def _arm(self) -> None:
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.client_left = True
                if self._task is not None:
                    self._task.cancel()
                return
