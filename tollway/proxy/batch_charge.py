"""A batch's worst case, charged as usage at submission and partly refunded at settlement.

A batch runs for up to a day, so nothing about it is held as a reservation: reservations
live in the counter store only (a restart of a single process loses them) and would hold
every counter they touch for a day. Instead, at submission the worst case of the whole batch
(every request's prompt bound plus its output cap, at the batch price; one request per line)
is acquired on every limit that applies, all or nothing, like any request's reservation, and
turned into usage at once. What was charged, per counter and window, is persisted with the
batch (`tollway.store.batches`), and when the provider has ended the batch the difference
between the charge and the actual usage is given back, on each counter whose window is still
the one charged. A window that has rolled since keeps the charge: the old window's usage is
history, and the new window never saw it.

A batch is charged to at most one end user (`tollway.proxy.end_user.batch_end_user`): their
counters are charged and refunded like the key's.

Batches hold no in-flight slot (the batch's in-flight check is taken and freed at once: a
key at its concurrency limit cannot submit) and are not clamped: the provider runs the file
as uploaded. Every limit is charged the worst case, whatever its `enforcement` mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tollway.governance.counters.base import CounterOp, CounterStore, SettleOp
from tollway.governance.counters.end_user_residency import EndUserResidency
from tollway.governance.decisions import Denial
from tollway.governance.durations import next_reset_ms
from tollway.governance.end_users import plan_end_users
from tollway.governance.engine import RequestFacts, acquire_ops, decide, plan
from tollway.governance.model import Kind, Level, PolicySnapshot

REQUESTS, TOKENS, BUDGET = 0, 1, 2  # `LimitCheck.slot` of each kind charged


@dataclass(frozen=True, slots=True)
class CounterCharge:
    """What a batch put on one counter, in the window it was charged in."""

    counter: str
    slot: int  # REQUESTS, TOKENS or BUDGET
    amount: int
    window_start_ms: int
    window_end_ms: int
    window_ms: int  # for the store's key expiry (`CounterOp.window_ms`)

    def to_row(self) -> list[int | str]:
        return [self.counter, self.slot, self.amount, self.window_start_ms, self.window_end_ms, self.window_ms]

    @classmethod
    def from_row(cls, row: Sequence[int | str]) -> CounterCharge:
        counter, slot, amount, start, end, window = row
        return cls(str(counter), int(slot), int(amount), int(start), int(end), int(window))


@dataclass(frozen=True, slots=True)
class BatchCharge:
    """The answer to a submission: the denial, or the counters charged (and what a shadow
    limit would have denied), with the ids the request log records."""

    denial: Denial | None
    charges: tuple[CounterCharge, ...] = ()
    key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    would_deny: Denial | None = None


@dataclass(frozen=True, slots=True)
class Unused:
    """What a settled batch did not use: requests not run, tokens and cost not produced."""

    requests: int
    tokens: int
    cost_nano: int

    def of(self, slot: int) -> int:
        return (self.requests, self.tokens, self.cost_nano)[slot]


async def charge_batch(store: CounterStore, snapshot: PolicySnapshot, facts: RequestFacts, requests: int,
                       now_ms: int, end_users: EndUserResidency | None = None) -> BatchCharge:
    """Charge ``requests`` requests and the worst case of ``facts`` (``worst_tokens``,
    ``worst_cost_nano``) on every limit of the key, provider and model, and of the
    batch's end user (``facts.end_user``; their counters read back first through
    ``end_users`` when evicted), or deny."""
    planned = plan(snapshot, facts, now_ms=now_ms, end_users=plan_end_users)
    if isinstance(planned, Denial):
        return BatchCharge(planned)
    if end_users is not None:
        held = [check.counter for check in planned.checks if check.scope.level is Level.END_USER]
        if held:
            await end_users.ensure(held, now_ms)
    owners = (planned.key.id if planned.key else None, planned.team_id, planned.customer_id)
    if not planned.checks:
        return BatchCharge(None, (), *owners)
    per_slot = (requests, facts.worst_tokens, facts.worst_cost_nano, 1)
    planned.amounts = tuple([per_slot[check.slot] for check in planned.checks])
    ops = acquire_ops(planned, now_ms)
    result = await store.acquire(ops)
    verdict = decide(planned, result, now_ms)
    if isinstance(verdict, Denial):
        return BatchCharge(verdict, (), *owners)
    # The reservation becomes usage at once; the in-flight slot is freed.
    await store.settle([SettleOp(op.counter, op.amount, 0 if check.kind is Kind.IN_FLIGHT else op.amount,
                                 op.floor_ms, op.reset_to_ms, op.window_ms)
                        for check, op in zip(planned.checks, ops)])
    charges = tuple(
        CounterCharge(op.counter, check.slot, op.amount, reading.last_reset_ms,
                      next_reset_ms(check.duration, reading.last_reset_ms, check.alignment), op.window_ms)
        for check, op, reading in zip(planned.checks, ops, result.readings)
        if check.kind is not Kind.IN_FLIGHT and op.amount > 0)
    return BatchCharge(None, charges, *owners, would_deny=verdict.would_deny)


async def refund_unused(store: CounterStore, charges: Sequence[CounterCharge], unused: Unused,
                        now_ms: int) -> int:
    """Give back ``unused`` on each charged counter whose window is still the one charged
    (never more than was charged there, nor more than the counter holds: an operator may
    have reset it meanwhile); returns how many counters were refunded."""
    current = [charge for charge in charges if now_ms < charge.window_end_ms and unused.of(charge.slot) > 0]
    if not current:
        return 0
    readings = await store.read([CounterOp(c.counter, 0, 0, c.window_start_ms, c.window_start_ms, c.window_ms)
                                 for c in current])
    ops = []
    for charge, reading in zip(current, readings):
        if reading.last_reset_ms != charge.window_start_ms:
            continue  # reset since (by an operator): that window is gone
        amount = min(unused.of(charge.slot), charge.amount, reading.used)
        if amount > 0:
            ops.append(SettleOp(charge.counter, 0, -amount, charge.window_start_ms, charge.window_start_ms,
                                charge.window_ms))
    if ops:
        await store.settle(ops)
    return len(ops)
