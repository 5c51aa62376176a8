"""Budgets, rate limits and concurrency limits nested in every governed entity, written
once for all of them: merging a partial update, resetting usage, and presenting each
limit with its live usage (for a concurrency limit: the requests in flight).

Usage shown is live: read from the counter store under the window current now (the
same windows the enforcer uses), not from the database columns, which lag by up to one
flush interval. Views are built inside the transaction with the stored values and
filled with the live ones after it (`LiveUsage.fill`), in one store read per response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from tollway.api.context import ApiWriter, ManagedRuntime, change, read
from tollway.api.errors import ApiError, from_validation
from tollway.config.schema import BudgetConfig, ConcurrencyConfig, RateLimitConfig
from tollway.governance.counters.base import CounterOp, CounterReading, CounterStore
from tollway.governance.decisions import iso_utc
from tollway.governance.durations import Alignment, Duration, next_reset_ms, parse_duration, window_at
from tollway.governance.model import NANO_PER_USD, budget_counter, in_flight_counter, request_counter, token_counter
from tollway.store.entities import LIMIT_FIELDS, Diff, view
from tollway.store.snapshot import usd_to_nano
from tollway.store.tables import Budget, ConcurrencyLimit, RateLimit
from tollway.store.usage import datetime_to_ms

T = TypeVar("T")
Which = Literal["budget", "rate_limit"]
_SIDES = (("token", token_counter), ("request", request_counter))


def iso(moment: datetime | None) -> str | None:
    """An aware datetime as ISO-8601 UTC with a Z, to the millisecond (like every time here)."""
    if moment is None:
        return None
    return iso_utc(datetime_to_ms(moment))


def money(amount: Decimal | int) -> float:
    """USD for JSON: Decimals as they are, integers as nano-dollars."""
    return float(amount) if isinstance(amount, Decimal) else amount / NANO_PER_USD


@dataclass(slots=True)
class _Pending:
    target: dict[str, Any]
    prefix: str  # "" for budgets, "token_" / "request_" for rate-limit sides
    counter: str
    limit: int
    duration: Duration
    alignment: Alignment | None
    money: bool


class LiveUsage:
    """Budget and rate-limit views waiting for their live usage."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._in_flight: list[tuple[dict[str, Any], str]] = []  # concurrency views and their counters

    def budget(self, row: Budget | None) -> dict[str, Any] | None:
        if row is None:
            return None
        out = {
            "id": row.id, "max_limit": money(row.max_limit), "reset_duration": row.reset_duration,
            "calendar_aligned": row.calendar_aligned, "timezone": row.timezone, "week_start": row.week_start,
            "current_usage": money(row.current_usage), "reserved": 0.0, "last_reset": iso(row.last_reset),
            "reset_at": None, "enforcement": row.enforcement, "on_insufficient": row.on_insufficient,
            "mode": row.mode,
        }
        alignment = Alignment(row.timezone, row.week_start) if row.calendar_aligned else None
        self._pending.append(_Pending(out, "", budget_counter(row.id), usd_to_nano(row.max_limit),
                                      parse_duration(row.reset_duration), alignment, True))
        return out

    def rate_limit(self, row: RateLimit | None) -> dict[str, Any] | None:
        if row is None:
            return None
        out: dict[str, Any] = {"id": row.id, "enforcement": row.enforcement, "on_insufficient": row.on_insufficient,
                               "mode": row.mode}
        for side, counter in _SIDES:
            limit, duration = getattr(row, f"{side}_max_limit"), getattr(row, f"{side}_reset_duration")
            configured = limit is not None and duration is not None
            out |= {
                f"{side}_max_limit": limit, f"{side}_reset_duration": duration,
                f"{side}_current_usage": getattr(row, f"{side}_current_usage") if configured else None,
                f"{side}_reserved": 0 if configured else None,
                f"{side}_last_reset": iso(getattr(row, f"{side}_last_reset")) if configured else None,
                f"{side}_reset_at": None,
            }
            if configured:
                self._pending.append(_Pending(out, f"{side}_", counter(row.id), limit,
                                              parse_duration(duration), None, False))
        return out

    def concurrency(self, row: ConcurrencyLimit | None) -> dict[str, Any] | None:
        if row is None:
            return None
        out = {"id": row.id, "max_in_flight": row.max_in_flight, "queue_timeout_ms": row.queue_timeout_ms,
               "mode": row.mode, "in_flight": 0}
        self._in_flight.append((out, in_flight_counter(row.id)))
        return out

    async def fill(self, store: CounterStore, now_ms: int) -> None:
        """Replace the stored usage in every view with the counter store's, in one read."""
        if not self._pending and not self._in_flight:
            return
        ops = []
        for item in self._pending:
            window = window_at(item.duration, now_ms, item.alignment)
            ops.append(CounterOp(item.counter, item.limit, 0, window.floor_ms, window.reset_to_ms))
        ops += [CounterOp(counter, 0, 0, 0, 0) for _, counter in self._in_flight]  # no window: never rolls
        readings = await store.read(ops)
        for item, reading in zip(self._pending, readings):
            _fill(item, reading)
        for (out, _), reading in zip(self._in_flight, readings[len(self._pending):]):
            out["in_flight"] = reading.reserved
        self._pending.clear()
        self._in_flight.clear()


def _fill(item: _Pending, reading: CounterReading) -> None:
    used = money(reading.used) if item.money else reading.used
    reserved = money(reading.reserved) if item.money else reading.reserved
    item.target[f"{item.prefix}current_usage"] = used
    item.target["reserved" if item.money else f"{item.prefix}reserved"] = reserved
    item.target[f"{item.prefix}last_reset"] = iso_utc(reading.last_reset_ms)
    item.target[f"{item.prefix}reset_at"] = iso_utc(next_reset_ms(item.duration, reading.last_reset_ms, item.alignment))


# -- writing ---------------------------------------------------------------------------------


def update_limits(writer: ApiWriter, owner: Any, patch: BaseModel, diff: Diff, *, reset_usage: bool,
                  prefix: str = "") -> None:
    """Apply the ``budget`` and ``rate_limit`` a partial update states (null removes one, its usage retained,
    a partial object changes only its fields); with ``reset_usage`` their usage restarts."""
    stated = patch.model_fields_set
    if "budget" in stated:
        where = prefix + "budget"
        budget = _merged(BudgetConfig, owner.budget, "budget", patch.budget, where)
        writer.sync_budget(owner, budget, diff, where)  # type: ignore[arg-type]
    if "rate_limit" in stated:
        where = prefix + "rate_limit"
        rate_limit = _merged(RateLimitConfig, owner.rate_limit, "rate_limit", patch.rate_limit, where)
        writer.sync_rate_limit(owner, rate_limit, diff, where)  # type: ignore[arg-type]
    if "concurrency" in stated:
        where = prefix + "concurrency"
        concurrency = _merged(ConcurrencyConfig, owner.concurrency, "concurrency", getattr(patch, "concurrency", None), where)
        writer.sync_concurrency(owner, concurrency, diff, where)  # type: ignore[arg-type]
    writer.sync_end_users(owner, patch, diff, stated_only=True)
    if reset_usage:
        for which in ("budget", "rate_limit"):
            if which in stated and getattr(owner, which) is not None:
                reset_columns(writer, getattr(owner, which))


def _merged(model: type[BaseModel], current: Any, which: str, patch: BaseModel | None, where: str) -> BaseModel | None:
    """The stored limit with the patch's stated fields over it, validated whole."""
    if patch is None:
        return None
    base = view(current, LIMIT_FIELDS[which]) if current is not None else {}
    try:
        return model.model_validate(base | patch.model_dump(exclude_unset=True))
    except ValidationError as exc:
        raise from_validation(exc, where) from None


def reset_columns(writer: ApiWriter, limit: Budget | RateLimit) -> None:
    """Zero a limit's stored usage now and note its counters for the store reset."""
    if isinstance(limit, Budget):
        limit.current_usage, limit.last_reset = Decimal(0), writer.now
        writer.resets.add(budget_counter(limit.id))
        return
    for side, counter in _SIDES:
        setattr(limit, f"{side}_current_usage", 0)
        setattr(limit, f"{side}_last_reset", writer.now)
        writer.resets.add(counter(limit.id))


def reset_usage(writer: ApiWriter, owner: Any, which: Which, kind: str, ident: str,
                before: dict[str, Any] | None) -> None:
    """The reset endpoints: zero ``owner``'s budget or rate limit and audit it with the
    usage ``before`` (a live view) and after."""
    limit = getattr(owner, which)
    if limit is None or before is None:
        label = "budget" if which == "budget" else "rate limit"
        raise ApiError(404, f"{kind.replace('_', ' ')} {ident!r} has no {label} to reset")
    reset_columns(writer, limit)
    writer.audit("reset", kind, ident, {which: _usage_part(before)}, {which: _usage_part(_zeroed(before, writer.now))})


def _usage_part(limit_view: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in limit_view.items()
            if name.endswith(("current_usage", "reserved", "last_reset")) and value is not None}


def _zeroed(limit_view: dict[str, Any], now: datetime) -> dict[str, Any]:
    out = dict(limit_view)
    for name, value in limit_view.items():
        if value is not None and name.endswith("current_usage"):
            out[name] = 0
        elif value is not None and name.endswith("last_reset"):
            out[name] = iso(now)
    return out


async def reset_route(runtime: ManagedRuntime, load: Callable[[Session], Any], which: Which, kind: str,
                      ident: str, present: Callable[[Any], T]) -> T:
    """A reset endpoint: read the live usage before, then reset in one audited change."""
    live = LiveUsage()
    before = await read(runtime, lambda session: getattr(live, which)(getattr(load(session), which)))
    await live.fill(runtime.store, runtime.clock_ms())

    def write(writer: ApiWriter) -> Any:
        owner = load(writer.session)
        reset_usage(writer, owner, which, kind, ident, before)
        return owner

    return await change(runtime, write, present)
