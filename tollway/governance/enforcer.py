"""The enforcer: the one async piece of governance.

It asks the pure engine which limits apply, runs the plan on the `CounterStore` in one
atomic acquire, and hands the readings back to the engine for the verdict. After the
upstream call it settles (charges actual usage) or releases (charges nothing).

A request refused for want of an in-flight slot whose limit has ``queue_timeout_ms``
may wait for one (`wait_for_slot`, see `slot_queue`); settling or releasing wakes the
next waiter of each slot freed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeGuard

from tollway.governance.clamp import amounts_at, clamped_cap
from tollway.governance.counters.base import AcquireResult, CounterReading, CounterStore, CounterUnavailable, SettleOp
from tollway.governance.counters.end_user_residency import EndUserResidency
from tollway.governance.decisions import Decision, Denial, concurrency_denial
from tollway.governance.end_users import EndUserMemo
from tollway.governance.engine import (
    Allowed,
    LimitCheck,
    LimitStatus,
    Plan,
    RequestFacts,
    WindowMemo,
    acquire_ops,
    assess,
    decide,
    owner_ids,
    plan,
    release_ops,
    settle_ops,
    shadow_denial,
    static_checks,
)
from tollway.governance.limit_rules import RulePlanner, is_templated
from tollway.governance.memo_scope import KeyMemoScope
from tollway.governance.model import Kind, Level, PolicySnapshot, VirtualKeyPolicy
from tollway.governance.slot_queue import MAX_POLL_S, SlotQueues
from tollway.governance.tags import TagPlanner

log = logging.getLogger(__name__)

# Distinct (key, provider, model) triples remembered per snapshot; clients choose model
# names, so the memo must be bounded.
_STATIC_MEMO_SIZE = 4096
# Acquires tried with a clamped cap before the first denial stands (others may take the room first).
_CLAMP_TRIES = 3


# Reservation and Admission are built once per request: plain slotted dataclasses, since a
# frozen one costs four times as much to construct.


@dataclass(slots=True)
class Reservation:
    """What an admitted request holds on the counters until it is settled or released."""

    id: int
    plan: Plan
    acquired_at_ms: int


@dataclass(slots=True)
class Admission:
    """The enforcer's answer for one request, with the ids the request log records."""

    allowed: bool
    denial: Denial | None
    reservation: Reservation | None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    allowed_provider_keys: frozenset[str] = frozenset()  # provider key ids the key may use; empty = all
    # A concurrency denial the request may wait out (the in-flight check that has a
    # queue_timeout_ms): pass the admission to `Enforcer.wait_for_slot`.
    queue: LimitCheck | None = None
    clamped_cap: int | None = None  # the output cap strict enforcement lowered the request's to, if it did
    readings: tuple[CounterReading, ...] = ()  # the counters after the reservation, in plan order
    # Admitted, but a shadow limit had no room: the denial it would have given (SPEC §8).
    would_deny: Denial | None = None
    tags: tuple[str, ...] = ()  # the request's tags with its key's forced tags (for the request log)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Every limit a request would meet now and the decision it would get (nothing reserved);
    ``would_deny``: what a shadow limit would deny, were it enforced."""

    decision: Decision
    denial: Denial | None
    limits: tuple[LimitStatus, ...]
    key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    would_deny: Denial | None = None
    clamped_cap: int | None = None  # strict with clamp: the output cap the request would be forwarded with


class Enforcer:
    """Admits requests against a `CounterStore`; ``clock_ms`` gives the time in epoch ms."""

    def __init__(self, store: CounterStore, clock_ms: Callable[[], int],
                 end_users: EndUserResidency | None = None) -> None:
        self._store = store
        # Loads back evicted end users' counters before a request of theirs is decided
        # (None: every counter stays in the store, as in tests of the engine alone).
        self.end_users = end_users
        self._clock_ms = clock_ms
        self.clock_ms = clock_ms  # the one clock of the request path (tests inject their own)
        self._ids = itertools.count(1)
        self._open: set[int] = set()  # ids of reservations not yet settled or released
        self._memo_scope = KeyMemoScope()
        # (key id, provider, model) -> (the key's policy it was built for, its checks)
        self._memo: dict[tuple[str | None, str, str], tuple[VirtualKeyPolicy | None, tuple[LimitCheck, ...]]] = {}
        self._windows = WindowMemo()
        self._end_users = EndUserMemo()
        self._queues = SlotQueues()
        self._tags = TagPlanner()
        self._rules = RulePlanner()

    @property
    def reservations_in_flight(self) -> int:
        """Reservations neither settled nor released (a steady rise means a leak)."""
        return len(self._open)

    @property
    def requests_waiting(self) -> int:
        """Requests of this process waiting for an in-flight slot."""
        return self._queues.waiting

    async def admit(self, snapshot: PolicySnapshot, facts: RequestFacts, *, _queued: bool = False) -> Admission:
        """Check every applicable limit and, when all have room, reserve on all of them.

        Raises `CounterUnavailable` when the store cannot be reached: whether to fail open
        or closed is the caller's choice, not governance's. A request that finds requests
        of this process waiting for a slot it needs queues behind them (its admission's
        ``queue`` is set) instead of taking a slot first; ``_queued`` marks the retries of
        such a waiting request (see `wait_for_slot`).
        """
        now = self._clock_ms()
        planned = plan(snapshot, facts, self._static_checks, now_ms=now, end_users=self._end_users)
        if not isinstance(planned, Denial):
            planned = self._tags.apply(snapshot, facts, planned)
        if not isinstance(planned, Denial) and snapshot.limit_rules:
            planned = self._rules.apply(snapshot, facts, planned)
        if isinstance(planned, Denial):
            return self._refused(snapshot, facts, planned)
        if self._queues.waiting and not _queued:
            ahead = self._waiters_ahead(planned, now)
            if ahead is not None:
                return ahead
        headers: list[tuple[bytes, bytes]] = []
        clamped: int | None = None
        readings: tuple[CounterReading, ...] = ()
        would: Denial | None = None
        if self.end_users is not None and (facts.end_user is not None or snapshot.limit_rules):
            await self._end_users_held(planned, now)
        if planned.checks:
            result = await self._store.acquire(acquire_ops(planned, now, self._windows))
            verdict = decide(planned, result, now)
            if isinstance(verdict, Denial) and facts.demand is not None:
                verdict, clamped, result = await self._clamp(planned, facts, result, verdict, now)
            if isinstance(verdict, Denial):
                failed = planned.checks[result.failed]  # only in-flight checks have a queue timeout
                return Admission(False, verdict, None, [], _key_id(planned.key), planned.team_id, planned.customer_id,
                                 queue=failed if failed.queue_timeout_ms > 0 else None, tags=planned.tags)
            headers, readings, would = verdict.headers, result.readings, verdict.would_deny
        reservation = Reservation(next(self._ids), planned, now)
        self._open.add(reservation.id)
        return Admission(True, None, reservation, headers, _key_id(planned.key), planned.team_id,
                         planned.customer_id, planned.allowed_provider_keys, clamped_cap=clamped, readings=readings,
                         would_deny=would, tags=planned.tags)

    async def _clamp(self, planned: Plan, facts: RequestFacts, result: AcquireResult, denial: Denial,
                     now: int) -> tuple[Allowed | Denial, int | None, AcquireResult]:
        """Retry a denied acquire with the output cap lowered to what fits (strict, clamp).

        The readings of a denied acquire hold what is left; another request may take it
        first, so a few tries are made before the first denial stands. Every try is an
        ordinary all-or-nothing acquire: clamping never reserves less than it forwards.
        """
        assert facts.demand is not None
        for _ in range(_CLAMP_TRIES):
            cap = clamped_cap(planned.checks, result.readings, facts.demand, facts.cap)
            if cap is None:
                break
            planned.amounts = amounts_at(planned.checks, facts.demand, cap)
            result = await self._store.acquire(acquire_ops(planned, now, self._windows))
            verdict = decide(planned, result, now)
            if not isinstance(verdict, Denial):
                return verdict, cap, result
        return denial, None, result

    async def extend(self, reservation: Reservation, tokens: int, cost_nano: int) -> Denial | None:
        """Reserve ``tokens`` and ``cost_nano`` more on the reservation's token limits and
        budgets (a stream that outgrew its reservation); the denial of the first limit
        without room, or None. Settling later drops the whole, extended reservation."""
        planned = reservation.plan
        extra = tuple([(0, tokens, cost_nano, 0)[check.slot] for check in planned.checks])
        indices = [i for i, amount in enumerate(extra) if amount > 0]
        if not indices or reservation.id not in self._open:
            return None
        now = self._clock_ms()
        part = Plan(tuple(planned.checks[i] for i in indices), tuple(extra[i] for i in indices))
        result = await self._store.acquire(acquire_ops(part, now, self._windows))
        verdict = decide(part, result, now)
        if isinstance(verdict, Denial):
            return verdict
        if reservation.id not in self._open:  # settled meanwhile: give the extension straight back
            await self._apply(release_ops(part, self._clock_ms(), self._windows))
            return None
        planned.amounts = tuple([amount + more for amount, more in zip(planned.amounts, extra)])
        return None

    async def wait_for_slot(self, snapshot: Callable[[], PolicySnapshot], facts: RequestFacts,
                            admission: Admission) -> Admission:
        """Wait, up to the ``queue_timeout_ms`` of ``admission.queue``, for an in-flight slot,
        first come first served among this process's waiters; then try once more.

        ``snapshot`` gives the policy in force at each try (a limit raised meanwhile lets
        waiters through). Returns the final admission (``queue`` cleared). Cancelling the
        call (the client hung up) leaves the queue and holds nothing.
        """
        check = admission.queue
        if check is None:
            return admission
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + check.queue_timeout_ms / 1000
        while admission.queue is not None:
            retry = await self._wait_in_queue(snapshot, facts, admission.queue.counter, deadline)
            if retry is None:  # the deadline passed: a last try, so that a slot free now is not refused
                admission = await self.admit(snapshot(), facts, _queued=True)
                break
            admission = retry  # admitted, refused for good, or waiting for another level's slot
        admission.queue = None
        denial = admission.denial
        if denial is not None and denial.decision is Decision.CONCURRENCY_LIMITED and denial.scope is not None:
            waited_ms = round((loop.time() - started) * 1000)
            admission.denial = concurrency_denial(denial.scope, denial.limit or 0, denial.used or 0,
                                                  self._clock_ms(), waited_ms)
        return admission

    async def _wait_in_queue(self, snapshot: Callable[[], PolicySnapshot], facts: RequestFacts, counter: str,
                             deadline: float) -> Admission | None:
        """Queue for ``counter`` and try again when woken (or, first in line, when polling);
        the admission that ends the wait, or None at the deadline."""
        loop = asyncio.get_running_loop()
        waiter = self._queues.join(counter)
        try:
            while (remaining := deadline - loop.time()) > 0:
                first = self._queues.is_first(waiter)
                await waiter.wait(min(waiter.poll_s, remaining) if first else remaining)
                if not waiter.woken:
                    if not self._queues.is_first(waiter):
                        continue
                    waiter.poll_s = min(waiter.poll_s * 2, MAX_POLL_S)  # polling for slots freed elsewhere
                waiter.woken = False
                retry = await self.admit(snapshot(), facts, _queued=True)
                if retry.queue is None or retry.queue.counter != counter:
                    return retry
            return None
        finally:
            self._queues.leave(waiter)

    async def settle(self, reservation: Reservation | None, tokens: int, cost_nano: int) -> None:
        """Charge actual usage on every checked level; a second call does nothing."""
        if not self._claim(reservation):
            return
        if reservation.plan.checks:
            await self._apply(settle_ops(reservation.plan, self._clock_ms(), tokens, cost_nano, self._windows))
            if self._queues.waiting:
                self._wake(reservation.plan)

    async def release(self, reservation: Reservation | None) -> None:
        """Give the reservation back and charge nothing; a second call does nothing."""
        if not self._claim(reservation):
            return
        if reservation.plan.checks:
            await self._apply(release_ops(reservation.plan, self._clock_ms(), self._windows))
            if self._queues.waiting:
                self._wake(reservation.plan)

    def _wake(self, planned: Plan) -> None:
        """The plan's in-flight slots are free again: wake the next waiter of each."""
        for check in planned.checks:
            if check.kind is Kind.IN_FLIGHT:
                self._queues.wake(check.counter)

    def _waiters_ahead(self, planned: Plan, now_ms: int) -> Admission | None:
        """A provisional denial when requests of this process already wait for a slot the
        plan needs: the newcomer queues behind them rather than taking a slot first."""
        for check in planned.checks:
            if check.queue_timeout_ms > 0 and self._queues.busy(check.counter):
                denial = concurrency_denial(check.scope, check.limit, check.limit, now_ms)
                return Admission(False, denial, None, [], _key_id(planned.key), planned.team_id, planned.customer_id,
                                 queue=check, tags=planned.tags)
        return None

    async def _apply(self, ops: list[SettleOp]) -> None:
        # The response is already on its way: an unreachable store costs this request's
        # accounting (the fail-open store keeps it locally), never the request itself.
        try:
            await self._store.settle(ops)
        except CounterUnavailable as exc:
            log.warning("usage of one request not recorded: counter store unavailable (%s)", exc)

    async def explain(self, snapshot: PolicySnapshot, facts: RequestFacts) -> Explanation:
        """Where every limit for ``facts`` stands and what the request would get now."""
        now = self._clock_ms()
        planned = plan(snapshot, facts, self._static_checks, now_ms=now, end_users=self._end_users)
        if not isinstance(planned, Denial):
            planned = self._tags.apply(snapshot, facts, planned)
        if not isinstance(planned, Denial) and snapshot.limit_rules:
            planned = self._rules.apply(snapshot, facts, planned)
        if isinstance(planned, Denial):
            return Explanation(planned.decision, planned, (), *_presented_ids(snapshot, facts))
        if self.end_users is not None and (facts.end_user is not None or snapshot.limit_rules):
            await self._end_users_held(planned, now)
        readings = await self._store.read(acquire_ops(planned, now, self._windows)) if planned.checks else ()
        denial, limits = assess(planned, readings, now)
        clamped: int | None = None
        if denial is not None and facts.demand is not None:  # as `admit` would: lower the cap where clamping is on
            clamped = clamped_cap(planned.checks, readings, facts.demand, facts.cap)
            if clamped is not None:
                planned.amounts = amounts_at(planned.checks, facts.demand, clamped)
                denial, limits = assess(planned, readings, now)
        decision = Decision.ALLOW if denial is None else denial.decision
        return Explanation(decision, denial, limits, _key_id(planned.key), planned.team_id, planned.customer_id,
                           shadow_denial(planned, readings, now) if planned.checks else None, clamped)

    async def _end_users_held(self, planned: Plan, now: int) -> None:
        """The plan's end-user counters (and templated rules' counters, named alike), loaded
        back if they were evicted (see `EndUserResidency`)."""
        assert self.end_users is not None
        counters = [check.counter for check in planned.checks if check.scope.level is Level.END_USER
                    or (check.scope.level is Level.LIMIT and is_templated(check.counter))]
        if counters:
            await self.end_users.ensure(counters, now)

    def _refused(self, snapshot: PolicySnapshot, facts: RequestFacts, denial: Denial) -> Admission:
        return Admission(False, denial, None, [], *_presented_ids(snapshot, facts), tags=facts.tags)

    def _claim(self, reservation: Reservation | None) -> TypeGuard[Reservation]:
        """Take the reservation out of the open set; False when it was already settled or released.

        Done before any await, so two concurrent calls cannot both charge.
        """
        if reservation is None or reservation.id not in self._open:
            return False
        self._open.remove(reservation.id)
        return True

    def _static_checks(
        self, snapshot: PolicySnapshot, key: VirtualKeyPolicy | None, provider: str, model: str
    ) -> tuple[LimitCheck, ...]:
        """`static_checks`, memoised across snapshots that changed only other keys
        (`KeyMemoScope`): an entry holds while the snapshot presents the key's policy
        object it was built for; a change to anything but keys clears the memo."""
        if not self._memo_scope.carries_over(snapshot):
            self._memo = {}
        memo_key = (key.id if key is not None else None, provider, model)
        entry = self._memo.get(memo_key)
        if entry is not None and entry[0] is key:
            return entry[1]
        if entry is None and len(self._memo) >= _STATIC_MEMO_SIZE:
            del self._memo[next(iter(self._memo))]
        checks = static_checks(snapshot, key, provider, model)
        self._memo[memo_key] = (key, checks)
        return checks


def _key_id(key: VirtualKeyPolicy | None) -> str | None:
    return key.id if key is not None else None


def _presented_ids(snapshot: PolicySnapshot, facts: RequestFacts) -> tuple[str | None, str | None, str | None]:
    """Key, team and customer ids of the key presented, for the request log of a denial.

    Identity denials are rare: finding the key again is cheaper than carrying it.
    """
    key = snapshot.keys_by_hash.get(facts.key_hash) if facts.key_hash is not None else None
    if key is None:
        return None, None, None
    return (key.id, *owner_ids(snapshot, key))
