"""Submitting a batch, for both batch APIs: charge its worst case (`batch_charge`), create
it at the provider, and persist it for the follow-up (`batch_follow`); a provider that
refuses or cannot be reached gets the whole charge back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from tollway.errors import governance_unavailable
from tollway.governance.counters.base import CounterUnavailable
from tollway.governance.engine import RequestFacts
from tollway.governance.names import model_key
from tollway.proxy.batch_charge import BatchCharge, Unused, charge_batch, refund_unused
from tollway.proxy.batch_gate import BatchGate, Caller, Refused
from tollway.proxy.batch_lines import BatchTarget
from tollway.proxy.outcome import Outcome
from tollway.proxy.passthrough import load_object
from tollway.store.batch_tables import Batch
from tollway.store.batches import OPEN, save_batch
from tollway.store.usage import ms_to_datetime

Forward = Callable[[], Awaitable[tuple[int, bytes, str]]]


@dataclass(frozen=True, slots=True)
class Submission:
    """A batch about to be submitted: where, by which account, and its worst case."""

    api: str  # openai or anthropic
    target: BatchTarget
    provider_key_id: str
    requests: int
    worst_tokens: int
    worst_cost_nano: int  # at the batch price
    input_file_id: str | None = None
    end_user: str | None = None  # the end user it is charged to (`tollway.proxy.end_user.batch_end_user`)


async def submit(gate: BatchGate, caller: Caller, submission: Submission, outcome: Outcome, forward: Forward,
                 first_poll_ms: int) -> tuple[int, bytes, str]:
    """Charge, create at the provider (``forward``), persist; the provider's answer."""
    services = gate.services
    target = submission.target.target
    facts = RequestFacts(target.provider, model_key(target.model), caller.key_hash, submission.worst_tokens,
                         submission.worst_cost_nano, submission.worst_tokens, submission.worst_cost_nano,
                         end_user=submission.end_user)
    outcome.end_user = submission.end_user
    try:
        charged = await charge_batch(services.counters, caller.snapshot, facts, submission.requests,
                                     services.clock_ms(), services.enforcer.end_users)
    except CounterUnavailable as exc:
        raise governance_unavailable(str(exc)) from None
    outcome.provider, outcome.model = target.provider, target.model
    outcome.key_id, outcome.team_id, outcome.customer_id = charged.key_id, charged.team_id, charged.customer_id
    outcome.would_deny = charged.would_deny
    if charged.denial is not None:
        raise Refused(charged.denial)
    everything = Unused(submission.requests, submission.worst_tokens, submission.worst_cost_nano)
    try:
        status, data, content_type = await forward()
    except BaseException:
        await refund_unused(services.counters, charged.charges, everything, services.clock_ms())
        raise
    created = load_object(data) if status < 300 else None
    batch_id = created.get("id") if created is not None else None
    if not isinstance(batch_id, str) or not batch_id:
        await refund_unused(services.counters, charged.charges, everything, services.clock_ms())
        outcome.status, outcome.error = status, f"upstream answered {status}"
        return status, data, content_type
    await save_batch(services.db, _row(batch_id, submission, charged, services.clock_ms(), first_poll_ms))
    outcome.request_id = batch_id  # the settlement's row carries the same id, and the cost
    return status, data, content_type


def _row(batch_id: str, submission: Submission, charged: BatchCharge, now_ms: int, first_poll_ms: int) -> Batch:
    now = ms_to_datetime(now_ms)
    target = submission.target.target
    return Batch(id=batch_id, api=submission.api, provider=target.provider, model=target.model,
                 provider_key_id=submission.provider_key_id, virtual_key_id=charged.key_id, team_id=charged.team_id,
                 customer_id=charged.customer_id, input_file_id=submission.input_file_id, requests=submission.requests,
                 charged_tokens=submission.worst_tokens, charged_cost_nano=submission.worst_cost_nano,
                 charges=[charge.to_row() for charge in charged.charges], state=OPEN, actual_tokens=0,
                 actual_cost_nano=0, created_at=now, next_poll_at=now + timedelta(milliseconds=first_poll_ms), polls=0)
