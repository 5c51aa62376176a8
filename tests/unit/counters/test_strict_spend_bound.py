"""Strict enforcement never lets spend pass a limit: random adversarial mixes of requests,
run concurrently through the real enforcer on both counter stores.

Each request is priced from the real `Demand` of a `WorstCase`; it may set no cap (one is
injected), ask for more than fits (refused, or clamped), run several generations, and
either answer within its cap or stream far past it (an upstream ignoring the cap) at
the adversarial rate of one byte per token, which the real `StreamMeter` holds within
what the reservation covers, extending it while the limits have room. After every mix,
on every strict limit: used <= limit and nothing is left reserved.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import factories as f
from tests.support.yielding_store import YieldingStore
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import (
    Plan,
    RequestFacts,
    acquire_ops,
    hash_key,
    static_checks,
)
from tollway.governance.model import Enforcement, PolicySnapshot
from tollway.pricing import ReservationRates
from tollway.proxy.estimate import Demand
from tollway.proxy.metering import StreamMeter
from tollway.proxy.reservation import covered_output, strict_cap
from tollway.proxy.worst_case import WorstCase

NOW = f.at(2026, 6, 1, 12)
RATES = ReservationRates(10**12, 2 * 10**12, 3 * 10**12)  # nano-dollars per token: 1 input (2 at worst), 3 output
INJECTED = 40  # the cap a request without one gets
KEY = f.key_value("strict")


@dataclass(frozen=True)
class Ask:
    prompt_bound: int
    prompt_share: float  # the actual prompt is this share of the bound
    generations: int
    cap: int | None
    wanted: int  # output tokens the model would produce without a cap
    stream: bool
    ignores_cap: bool
    chunk: int  # tokens per stream event


asks = st.builds(
    Ask,
    prompt_bound=st.integers(1, 300),
    prompt_share=st.floats(0, 1),
    generations=st.integers(1, 3),
    cap=st.none() | st.integers(1, 400),
    wanted=st.integers(0, 1500),
    stream=st.booleans(),
    ignores_cap=st.booleans(),
    chunk=st.integers(1, 40),
)


def _snapshot(clamp_key: bool, clamp_team: bool) -> PolicySnapshot:
    tag = uuid.uuid4().hex[:10]  # fresh counters for every example (the Redis server is shared)

    def strict(policy, clamp: bool):
        return replace(policy, enforcement=Enforcement(True, clamp))

    return f.snapshot(
        keys={KEY: f.virtual_key("k", team_id="t",
                                 budget=strict(f.budget("0.000004", "1d", id=f"kb-{tag}"), clamp_key),
                                 rate_limit=strict(f.rate_limit(tokens=2_500, token_window="1d", id=f"kr-{tag}"),
                                                   clamp_key))},
        teams=[f.team("t", budget=strict(f.budget("0.000006", "1d", id=f"tb-{tag}"), clamp_team))],
    )


def _demand(ask: Ask) -> Demand:
    worst = WorstCase(ask.prompt_bound, ask.generations, ask.cap, "max_tokens" if ask.cap else None)
    return Demand(worst, max(1, ask.prompt_bound // 4), 16, RATES, ask.cap if ask.cap is not None else INJECTED)


def _cost(prompt: int, output: int) -> int:
    return prompt * 1 + output * 3  # what the request is charged: its actual tokens at the real rates


def _event(tokens: int) -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * tokens + b'"}}]}\n\n'


async def _stream(meter: StreamMeter, produced: int, chunk: int) -> int:
    """Relay ``produced`` one-byte tokens through the meter; the output tokens charged."""
    sent = 0
    while sent < produced:
        size = min(chunk, produced - sent)
        await meter.admit(_event(size))
        if meter.cut:
            return meter.settled_count()
        sent += size
    return sent  # finished: the upstream's own usage, which the meter's count bounds


async def _one(enforcer: Enforcer, snapshot: PolicySnapshot, ask: Ask) -> None:
    demand = _demand(ask)
    facts = RequestFacts("openai", "gpt", hash_key(KEY), *demand(demand.cap), demand=demand, cap=demand.cap)
    admission = await enforcer.admit(snapshot, facts)
    reservation = admission.reservation
    if reservation is None:
        return
    cap = strict_cap(admission, demand) or demand.cap
    prompt = int(ask.prompt_bound * ask.prompt_share)
    produced = ask.wanted if ask.ignores_cap and ask.stream else min(ask.wanted, ask.generations * cap)
    if ask.stream:
        covers = covered_output(reservation.plan, demand, admission.readings)
        assert covers is not None
        reserved, covered = covers

        async def extend(tokens: int):
            return await enforcer.extend(reservation, tokens, -(-tokens * RATES.output // 10**12))

        output = await _stream(StreamMeter(covered, extend, reserved), produced, ask.chunk)
    else:
        output = produced  # a non-streamed answer within its (clamped or injected) cap
    await enforcer.settle(reservation, prompt + output, _cost(prompt, output))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mix=st.lists(asks, min_size=1, max_size=25), clamp_key=st.booleans(), clamp_team=st.booleans())
async def test_strict_limits_are_never_exceeded_by_any_mix_of_requests(counter_store, mix, clamp_key,
                                                                        clamp_team) -> None:
    snapshot = _snapshot(clamp_key, clamp_team)
    enforcer = Enforcer(YieldingStore(counter_store), lambda: NOW)
    await asyncio.gather(*(_one(enforcer, snapshot, ask) for ask in mix))
    checks = static_checks(snapshot, snapshot.keys_by_hash[hash_key(KEY)], "openai", "gpt")
    readings = await counter_store.read(acquire_ops(Plan(checks, (0,) * len(checks)), NOW))
    for check, reading in zip(checks, readings, strict=True):
        assert reading.used <= check.limit, (check.scope, check.kind, reading)
        assert reading.reserved == 0, (check.scope, check.kind, reading)
    assert enforcer.reservations_in_flight == 0
