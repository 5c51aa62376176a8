"""A small cache of report answers, so that many UI tabs reloading the overview (or a
dashboard polling the spend API) cost one computation per query and second, not one each.

Keyed by the query as asked (an open end means "until now"); an answer is served for
``ttl_ms`` of the gateway's clock, then computed afresh. Callers asking while the same
query is being computed wait for that computation instead of starting their own.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

TTL_MS = 1_000
MAX_ENTRIES = 256


class ReportCache:
    """Answers by query, each fresh for ``ttl_ms``; at most ``max_entries`` (oldest go first)."""

    def __init__(self, clock_ms: Callable[[], int], ttl_ms: int = TTL_MS, max_entries: int = MAX_ENTRIES) -> None:
        self._clock_ms = clock_ms
        self._ttl_ms = ttl_ms
        self._max_entries = max_entries
        self._answers: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> Any:
        """The answer to ``key``: cached if computed less than ``ttl_ms`` ago, else ``compute()``."""
        cached = self._answers.get(key)
        if cached is not None and self._clock_ms() - cached[0] < self._ttl_ms:
            return cached[1]
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(self._compute(key, compute))
            self._running[key] = running
        # Shielded: a caller that goes away must not cancel the answer others wait for.
        return await asyncio.shield(running)

    async def _compute(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> Any:
        started = self._clock_ms()  # the answer's age counts from before it was computed
        try:
            answer = await compute()
        finally:
            self._running.pop(key, None)
        self._answers[key] = (started, answer)
        self._answers.move_to_end(key)
        while len(self._answers) > self._max_entries:
            self._answers.popitem(last=False)
        return answer
