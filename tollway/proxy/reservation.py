"""What an admitted request's reservation means for the call: the output cap strict
enforcement sends, and how much output the reservation covers (for the stream meter)."""

from __future__ import annotations

from collections.abc import Sequence

from tollway.governance.counters.base import CounterReading
from tollway.governance.enforcer import Admission
from tollway.governance.engine import LimitCheck, Plan
from tollway.governance.model import Kind
from tollway.pricing import RATE_SCALE, scaled_cost
from tollway.proxy.estimate import Demand
from tollway.proxy.outcome import Outcome
from tollway.usage import Usage


def strict_cap(admission: Admission, demand: Demand) -> int | None:
    """The output cap to write into the upstream body, or None to send it as it is: the
    clamped cap, or, under strict enforcement, the reserved cap of a request that set none."""
    if admission.clamped_cap is not None:
        return admission.clamped_cap
    if demand.worst.cap is not None or not demand.clampable or admission.reservation is None:
        return None
    # A shadow limit never bounds the call: its strictness only decides what it reserves.
    strict = any(check.enforcement.strict and check.kind is not Kind.REQUESTS and not check.shadow
                 for check in admission.reservation.plan.checks)
    return demand.cap if strict else None


def covered_output(plan: Plan, demand: Demand, readings: Sequence[CounterReading]) -> tuple[int, int] | None:
    """(reserved, covered): output tokens beyond the prompt that the reservation holds on
    its tightest token limit or budget, and how far a stream may go before its meter must
    reserve more; None when no limit bounds the output.

    A strict limit covers what the request reserved (its worst case); a limit in estimate
    mode covers what it had left at admission (``readings``, taken after the reservation),
    so that streams far from their limits are never stopped to reserve more.
    """
    reserved: int | None = None
    covered: int | None = None
    for index, (check, amount) in enumerate(zip(plan.checks, plan.amounts, strict=True)):
        if check.shadow:  # never bounds the output: a stream is not metered against it
            continue
        reading = readings[index] if readings else None
        held = _output_tokens(check, amount, demand)
        if held is None:
            continue
        room = held
        if not check.enforcement.strict and reading is not None:  # what was left, its own reservation included
            room = _output_tokens(check, check.limit - reading.used - reading.reserved + amount, demand) or 0
        reserved = held if reserved is None else min(reserved, held)
        covered = room if covered is None else min(covered, room)
    if reserved is None or covered is None:
        return None
    return max(0, reserved), max(0, covered)


def _output_tokens(check: LimitCheck, amount: int, demand: Demand) -> int | None:
    """Output tokens ``amount`` on ``check`` pays for beyond the prompt (None: it bounds no output)."""
    worst, rates, strict = demand.worst, demand.rates, check.enforcement.strict
    if check.kind is Kind.TOKENS:
        return amount - (worst.prompt_tokens if strict else demand.prompt_estimate)
    if check.kind is Kind.BUDGET and rates.output > 0:
        prompt_cost = scaled_cost(worst.prompt_tokens * rates.worst_input if strict
                                  else demand.prompt_estimate * rates.input)
        return (amount - prompt_cost) * RATE_SCALE // rates.output
    return None


def note_ignored_cap(usage: Usage, demand: Demand, cap: int | None, outcome: Outcome) -> None:
    """Record an answer with more output than its cap allows (the upstream ignored it): it
    is charged as reported, which only such an upstream can make exceed a strict reservation."""
    honoured = cap if cap is not None else demand.worst.cap
    if not honoured:
        return
    allowed = demand.worst.output_tokens(honoured)
    if usage.completion_tokens > allowed:
        outcome.error = (f"the upstream ignored the output cap: {usage.completion_tokens} output tokens "
                         f"where {allowed} were allowed")
