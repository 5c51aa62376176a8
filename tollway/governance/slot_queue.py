"""The requests of one gateway process waiting for an in-flight slot (``queue_timeout_ms``).

One first-in-first-out queue per in-flight counter. A request that ends in this process
wakes the first waiter of each counter it held a slot on; the woken waiter tries to
acquire again. Only the first waiter of a queue also polls, with a backoff: a slot freed
by another process (with Redis, another node) sends no wake-up. When a waiter leaves
the head of its queue (it got a slot, gave up or its client hung up) the next one is
woken, so that it starts polling, and a wake-up its predecessor did not use is not lost.

Order is strict among the waiters of one process; across processes it is approximate:
each process's first waiter polls, and whichever polls first after a slot frees gets it.
"""

from __future__ import annotations

import asyncio
from collections import deque

FIRST_POLL_S = 0.005
MAX_POLL_S = 0.1


class Waiter:
    """One request's place in one queue."""

    __slots__ = ("_event", "counter", "poll_s", "woken")

    def __init__(self, counter: str) -> None:
        self.counter = counter
        self.woken = False  # a slot may have freed for it: it should try to acquire
        self.poll_s = FIRST_POLL_S
        self._event = asyncio.Event()

    def wake(self) -> None:
        self.woken = True
        self._event.set()

    async def wait(self, timeout_s: float) -> None:
        """Until woken or ``timeout_s`` passed, whichever is first."""
        if not self._event.is_set():
            try:
                async with asyncio.timeout(timeout_s):
                    await self._event.wait()
            except TimeoutError:
                pass
        self._event.clear()


class SlotQueues:
    """Per in-flight counter, this process's waiters in order of arrival."""

    __slots__ = ("_queues", "waiting")

    def __init__(self) -> None:
        self._queues: dict[str, deque[Waiter]] = {}
        self.waiting = 0  # over all queues: 0 lets the hot path skip every other look-up

    def busy(self, counter: str) -> bool:
        """Whether requests of this process are waiting for a slot of ``counter``."""
        return bool(self._queues.get(counter))

    def join(self, counter: str) -> Waiter:
        waiter = Waiter(counter)
        self._queues.setdefault(counter, deque()).append(waiter)
        self.waiting += 1
        return waiter

    def is_first(self, waiter: Waiter) -> bool:
        queue = self._queues.get(waiter.counter)
        return bool(queue) and queue[0] is waiter  # type: ignore[index]

    def leave(self, waiter: Waiter) -> None:
        """Take ``waiter`` out; when it was first, or woken, the next one is woken."""
        queue = self._queues.get(waiter.counter)
        if queue is None or waiter not in queue:
            return
        first = queue[0] is waiter
        queue.remove(waiter)
        self.waiting -= 1
        if not queue:
            del self._queues[waiter.counter]
        elif first or waiter.woken:
            self.wake(waiter.counter)

    def wake(self, counter: str) -> None:
        """One slot of ``counter`` may have freed: wake its first waiter not yet woken."""
        for waiter in self._queues.get(counter, ()):
            if not waiter.woken:
                waiter.wake()
                return
