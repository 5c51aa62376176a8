"""Strict enforcement in the enforcer (worst case reserved, clamping, extensions) and the
stream meter that cuts a stream off at its reservation."""

from __future__ import annotations

from dataclasses import replace

import orjson

from tests import factories as f
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.decisions import Decision, Denial, limit_denial
from tollway.governance.durations import parse_duration
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import RequestFacts, acquire_ops, hash_key
from tollway.governance.model import Enforcement, Kind, Level, Scope
from tollway.pricing import ReservationRates
from tollway.providers.client import Api
from tollway.providers.sse import SSEParser
from tollway.proxy.estimate import Demand
from tollway.proxy.metering import StreamMeter, cutoff_events
from tollway.proxy.worst_case import WorstCase

NOW = f.at(2026, 6, 1)
KEY = f.key_value("k")
RATES = ReservationRates(10**12, 10**12, 10**12)  # one nano-dollar per token


def _snapshot(tokens: int, enforcement: Enforcement, budget_usd: str = "1"):
    limits = replace(f.rate_limit(tokens=tokens, token_window="1h"), enforcement=enforcement)
    return f.snapshot(keys={KEY: f.virtual_key("k", rate_limit=limits,
                                               budget=replace(f.budget(budget_usd), enforcement=enforcement))})


def _facts(prompt: int, cap: int | None, generations: int = 1) -> RequestFacts:
    demand = Demand(WorstCase(prompt, generations, cap, "max_tokens" if cap else None), prompt // 4, 16, RATES,
                    cap or 100)
    return RequestFacts("openai", "gpt", hash_key(KEY), *demand(demand.cap), demand=demand, cap=demand.cap)


async def test_strict_reserves_the_worst_case_and_refuses_what_does_not_fit() -> None:
    enforcer = Enforcer(MemoryCounterStore(), lambda: NOW)
    snapshot = _snapshot(1_000, Enforcement(strict=True))
    first = await enforcer.admit(snapshot, _facts(100, 400, generations=2))  # 100 + 800
    assert first.allowed and first.reservation.plan.amounts[0] == 900
    second = await enforcer.admit(snapshot, _facts(10, 100))  # would need 110; 100 left
    assert second.denial is not None and second.denial.decision is Decision.TOKEN_LIMITED
    assert second.denial.reserved == 900 and second.denial.used == 900
    assert "900 reserved by requests in flight" in second.denial.message


async def test_clamp_lowers_the_cap_to_what_fits() -> None:
    enforcer = Enforcer(MemoryCounterStore(), lambda: NOW)
    snapshot = _snapshot(1_000, Enforcement(strict=True, clamp=True))
    await enforcer.admit(snapshot, _facts(100, 800))  # 900 reserved
    clamped = await enforcer.admit(snapshot, _facts(40, 500, generations=2))  # 40 + 2 × 30 = 100 fits
    assert clamped.allowed and clamped.clamped_cap == 30 and clamped.reservation.plan.amounts[0] == 100
    assert (await enforcer.admit(snapshot, _facts(1, 10))).denial is not None  # not even one token is left


async def test_estimate_mode_never_clamps() -> None:
    enforcer = Enforcer(MemoryCounterStore(), lambda: NOW)
    snapshot = _snapshot(100, Enforcement(strict=False, clamp=True))
    admission = await enforcer.admit(snapshot, _facts(400, 200))
    assert admission.denial is not None and admission.clamped_cap is None


async def test_an_extension_reserves_more_or_names_the_limit_without_room() -> None:
    store = MemoryCounterStore()
    enforcer = Enforcer(store, lambda: NOW)
    snapshot = _snapshot(1_000, Enforcement(strict=True))
    admission = await enforcer.admit(snapshot, _facts(100, 100))  # 200
    assert await enforcer.extend(admission.reservation, 300, 300) is None
    assert admission.reservation.plan.amounts == (500, 500)
    denial = await enforcer.extend(admission.reservation, 600, 600)
    assert denial is not None and denial.decision is Decision.TOKEN_LIMITED
    await enforcer.settle(admission.reservation, 450, 450)
    readings = await store.read(acquire_ops(admission.reservation.plan, NOW))
    assert [(r.used, r.reserved) for r in readings] == [(450, 0), (450, 0)]


def _event(text: str) -> bytes:
    return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + b"\n\n"


async def test_the_meter_relays_whole_events_and_cuts_at_what_is_covered() -> None:
    async def refuse(tokens: int):
        return _denial()

    meter = StreamMeter(10, refuse)
    assert await meter.admit(_event("abcd")) == _event("abcd")
    partial = _event("efgh")
    assert await meter.admit(partial[:7]) == b""  # half an event waits for its end
    assert await meter.admit(partial[7:]) == partial
    assert not meter.cut and meter.settled_count() == 8
    assert await meter.admit(_event("ijk")) == b""  # 11 > 10, and no limit has room
    assert meter.cut and meter.counted == 8 and meter.denial is not None


async def test_the_meter_extends_while_the_limits_have_room() -> None:
    asked: list[int] = []

    async def grant(tokens: int):
        asked.append(tokens)

    meter = StreamMeter(4, grant)
    for _ in range(100):
        await meter.admit(_event("abcdefgh"))
    assert not meter.cut and meter.settled_count() == 800 and len(asked) <= 4  # doubling: few extensions


def _denial() -> Denial:
    return limit_denial(Kind.BUDGET, Scope(Level.VIRTUAL_KEY, "k", "k"), 10, 10, 5, parse_duration("1d"), NOW, NOW)


def test_a_cut_openai_stream_ends_with_length_an_error_naming_the_limit_and_done() -> None:
    events = SSEParser().feed(cutoff_events(Api.CHAT, "m", 2, 0, 12, _denial(), "cut: budget"))
    bodies = [event.data for event in events]
    assert [orjson.loads(b)["choices"][0]["finish_reason"] for b in bodies[:2]] == ["length", "length"]
    error = orjson.loads(bodies[2])["error"]
    assert error["type"] == "budget_exceeded" and error["scope"]["level"] == "virtual_key"
    assert bodies[3] == b"[DONE]"


def test_a_cut_anthropic_stream_closes_its_block_and_stops_for_max_tokens() -> None:
    events = SSEParser().feed(cutoff_events(Api.MESSAGES, "m", 1, 1, 12, _denial(), "cut: budget"))
    assert [event.event for event in events] == ["content_block_stop", "message_delta", "error", "message_stop"]
    assert orjson.loads(events[1].data)["delta"]["stop_reason"] == "max_tokens"
    assert orjson.loads(events[2].data)["error"]["type"] == "budget_exceeded"
