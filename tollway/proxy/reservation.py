"""What an admitted request's reservation means for the call: the output cap strict
enforcement sends, and how much output the reservation covers (for the stream meter)."""

from __future__ import annotations

from tollway.governance.engine import Plan
from tollway.governance.enforcer import Admission
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
    strict = any(check.enforcement.strict and check.kind is not Kind.REQUESTS for check in admission.reservation.plan.checks)
    return demand.cap if strict else None


def covered_output(plan: Plan, demand: Demand) -> int | None:
    """Output tokens the reservation covers on its tightest token limit or budget, beyond
    the prompt (its worst case on strict limits, its estimate on others); None when no
    limit bounds the output."""
    covered: int | None = None
    worst, rates = demand.worst, demand.rates
    for check, amount in zip(plan.checks, plan.amounts):
        strict = check.enforcement.strict
        if check.kind is Kind.TOKENS:
            room = amount - (worst.prompt_tokens if strict else demand.prompt_estimate)
        elif check.kind is Kind.BUDGET and rates.output > 0:
            prompt_cost = scaled_cost(worst.prompt_tokens * rates.worst_input if strict
                                      else demand.prompt_estimate * rates.input)
            room = (amount - prompt_cost) * RATE_SCALE // rates.output
        else:
            continue
        covered = room if covered is None else min(covered, room)
    return None if covered is None else max(0, covered)


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
