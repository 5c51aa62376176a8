"""Windows that reset, seen through the real server with an injected clock: the test moves
time instead of sleeping through a minute, and reads the counter store it handed in."""

from __future__ import annotations

import openai
import pytest

from tests.integration.test_governance import HELLO, KEY_A, config, key, key_limits, sdk
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.model import budget_counter, request_counter
from tollway.server.services import Services

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: far from the real clock, so a leak of it shows


class MovableClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


async def test_a_request_limit_opens_again_when_its_window_ends(gateway, mock) -> None:
    clock, store = MovableClock(START_MS), MemoryCounterStore()
    running = gateway(config(mock, keys=[key(KEY_A, rate_limit={"request_max_limit": 2, "request_reset_duration": "1m"})]),
                      Services(clock_ms=clock, counter_store=store))
    client = sdk(running, KEY_A)
    for _ in range(2):
        await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as denied:
        await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    # Retry-After is read from the injected clock: the window began at START_MS.
    assert int(denied.value.response.headers["Retry-After"]) == 60

    clock.advance(59)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    clock.advance(1)
    await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)

    counter = running.counters()[request_counter(key_limits(running, KEY_A).rate_limit.id)]
    assert (counter.used, counter.last_reset_ms) == (1, START_MS + 60_000)
    assert running.runtime.store is store


async def test_a_spent_budget_is_refused_until_its_period_resets(gateway, mock) -> None:
    clock = MovableClock(START_MS)
    running = gateway(config(mock, keys=[key(KEY_A, budget={"max_limit": 0.00008, "reset_duration": "1h"})]),
                      Services(clock_ms=clock))
    client = sdk(running, KEY_A)
    await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, max_tokens=30)
    with pytest.raises(openai.APIStatusError) as denied:
        await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, max_tokens=30)
    assert denied.value.status_code == 402

    clock.advance(3600)
    await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, max_tokens=30)
    counter = running.counters()[budget_counter(key_limits(running, KEY_A).budget.id)]
    assert counter.last_reset_ms == START_MS + 3_600_000
