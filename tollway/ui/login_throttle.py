"""Throttling of failed admin UI logins.

Per client address (IPv6 by its /64, which one host usually holds whole): the first
``free_failures`` failures cost nothing; after that each failure doubles the wait
before the next try, from ``base_delay`` up to ``max_delay``. A try during the wait is
refused with 429 and Retry-After *before* the token is checked, so a throttled client
learns nothing, not even that it guessed right. An address quiet for ``forget_after``
starts over; a successful login clears its address.

Across all addresses together, failures draw on a bucket of ``global_free_failures``
that refills over ``forget_after``: guessing from many addresses (or enough of them
to push others out of the bounded table) gets no further than that.

The state is bounded: at most ``max_addresses`` entries, least recently seen dropped
first. It lives in one process: with several workers, each throttles on its own.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tollway.config.schema import LoginThrottleConfig, duration_s


@dataclass(slots=True)
class _Address:
    failures: int
    last_failure: float
    blocked_until: float


def address_key(host: str | None) -> str:
    """The throttled unit: an IPv4 address, an IPv6 /64, or the text as given."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


class LoginThrottle:
    def __init__(self, config: LoginThrottleConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._free = config.free_failures
        self._base_s = duration_s(config.base_delay)
        self._max_s = duration_s(config.max_delay)
        self._forget_s = duration_s(config.forget_after)
        self._max_addresses = config.max_addresses
        self._clock = clock
        self._addresses: OrderedDict[str, _Address] = OrderedDict()
        self._global_capacity = float(config.global_free_failures)
        self._global_tokens = self._global_capacity
        self._global_refill_per_s = self._global_capacity / self._forget_s
        self._global_at = clock()

    def wait_s(self, host: str | None) -> float:
        """Seconds before a login from ``host`` may be tried (0: now)."""
        now = self._clock()
        self._refill(now)
        waits = [0.0]
        if self._global_tokens < 1:
            waits.append((1 - self._global_tokens) / self._global_refill_per_s)
        entry = self._entry(address_key(host), now)
        if entry is not None:
            waits.append(entry.blocked_until - now)
        return max(waits)

    def failed(self, host: str | None) -> None:
        now = self._clock()
        self._refill(now)
        self._global_tokens = max(self._global_tokens - 1, 0.0)
        key = address_key(host)
        entry = self._entry(key, now)
        if entry is None:
            entry = self._addresses[key] = _Address(0, now, now)
            while len(self._addresses) > self._max_addresses:
                self._addresses.popitem(last=False)
        entry.failures += 1
        entry.last_failure = now
        if entry.failures >= self._free:
            doublings = min(entry.failures - self._free, 40)  # 2**40 s is past any max_delay
            entry.blocked_until = now + min(self._base_s * 2**doublings, self._max_s)

    def succeeded(self, host: str | None) -> None:
        self._addresses.pop(address_key(host), None)

    def _entry(self, key: str, now: float) -> _Address | None:
        entry = self._addresses.get(key)
        if entry is None:
            return None
        if now - entry.last_failure >= self._forget_s and now >= entry.blocked_until:
            del self._addresses[key]
            return None
        self._addresses.move_to_end(key)
        return entry

    def _refill(self, now: float) -> None:
        elapsed = max(now - self._global_at, 0.0)
        self._global_at = now
        self._global_tokens = min(self._global_capacity, self._global_tokens + elapsed * self._global_refill_per_s)
