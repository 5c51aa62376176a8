"""The follow-up of batches on an injected clock (no sleeps): it asks the provider first
after `poll_interval`, then twice as long each time up to `max_poll_interval`; a batch another
node claimed waits until that node's lease lapses; and a refund reaches only the windows the
charge is still in (a rolled window keeps it)."""

from __future__ import annotations

import math
from datetime import timedelta

from tests.integration.conftest import mock_control
from tests.integration.test_batches import (
    KEY,
    NANO_IN,
    NANO_OUT,
    OUTPUT,
    PRICING,
    PROMPT,
    chat_line,
    on_gateway,
    sdk,
    upload,
    worst,
)
from tests.integration.test_governance import key, key_limits
from tests.support.gateway import mock_providers
from tollway.governance.model import budget_counter, token_counter
from tollway.server.services import Services
from tollway.store.batch_tables import Batch
from tollway.store.batches import claim
from tollway.store.usage import ms_to_datetime

START_MS = 1_780_000_000_000
CREATE = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}


class Clock:
    def __init__(self) -> None:
        self.now_ms = START_MS

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)


def clocked_gateway(gateway, mock, clock: Clock, **limits):
    return gateway({"providers": mock_providers(mock.url), "enforce_virtual_keys": True, "pricing": PRICING,
                    "governance": {"virtual_keys": [key(KEY, **limits)]}}, Services(clock_ms=clock))


async def _row(running, batch_id: str) -> Batch:
    async def read() -> Batch:
        async with running.runtime.db.session() as session:
            row = await session.get(Batch, batch_id)
            assert row is not None
            return row

    return await on_gateway(running, read())


async def _tick(running) -> int:
    return await on_gateway(running, running.runtime.batches.follower.tick())


async def test_the_follow_up_backs_off_until_the_batch_ends(gateway, mock) -> None:
    clock = Clock()
    running = clocked_gateway(gateway, mock, clock, budget={"max_limit": 10, "reset_duration": "1d"})
    client = sdk(running)
    batch = await client.batches.create(input_file_id=await upload(client, [chat_line(0)]), **CREATE)
    polled = []
    for wait in (29, 1, 60, 120, 240, 480, 600, 600):  # 30 s, doubling, up to 10 minutes
        before = len(mock.state.requests)
        clock.advance(wait)
        assert await _tick(running) == 0
        polled.append(len(mock.state.requests) > before)
    assert polled == [False, True, True, True, True, True, True, True]
    row = await _row(running, batch.id)
    assert row.polls == 7 and row.provider_status == "in_progress"
    assert row.next_poll_at == ms_to_datetime(clock() + 600_000)
    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete")
    clock.advance(600)
    assert await _tick(running) == 1


async def test_a_batch_another_node_holds_waits_for_its_lease_to_lapse(gateway, mock) -> None:
    clock = Clock()
    running = clocked_gateway(gateway, mock, clock, budget={"max_limit": 10, "reset_duration": "1d"})
    client = sdk(running)
    batch = await client.batches.create(input_file_id=await upload(client, [chat_line(0)]), **CREATE)
    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete")
    clock.advance(31)
    held = await on_gateway(running, claim(running.runtime.db, batch.id, "a-node-that-died",
                                           ms_to_datetime(clock()), timedelta(minutes=5)))
    assert held is not None
    assert await _tick(running) == 0  # held: not followed up
    clock.advance(5 * 60 + 1)
    assert await _tick(running) == 1  # the lease lapsed: taken over and settled


async def test_a_refund_reaches_only_windows_the_charge_is_still_in(gateway, mock) -> None:
    clock = Clock()
    running = clocked_gateway(gateway, mock, clock,
                              rate_limit={"token_max_limit": 1_000_000, "token_reset_duration": "1h"},
                              budget={"max_limit": 10, "reset_duration": "1d"})
    client = sdk(running)
    lines = [chat_line(i) for i in range(2)]
    batch = await client.batches.create(input_file_id=await upload(client, lines), **CREATE)
    tokens, cost = worst(lines)
    limits = key_limits(running, KEY)
    tokens_counter, budget = token_counter(limits.rate_limit.id), budget_counter(limits.budget.id)
    assert running.counters()[tokens_counter].used == tokens
    clock.advance(2 * 3600)  # the token window has rolled; the day's budget has not
    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete")
    assert await _tick(running) == 1
    state = running.counters()
    assert state[tokens_counter].used == tokens  # the old window keeps its charge, the new one is untouched
    assert state[budget].used == 2 * math.ceil((PROMPT * NANO_IN + OUTPUT * NANO_OUT) * 0.5)
    assert cost > state[budget].used
