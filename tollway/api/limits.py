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
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from tollway.api.context import ApiWriter, ManagedRuntime, change, read
from tollway.api.errors import ApiError, from_validation
from tollway.config.schema import BudgetConfig, ConcurrencyConfig, RateLimitConfig
from tollway.governance.counters.base import CounterStore
from tollway.governance.decisions import iso_utc
from tollway.governance.engine import LimitCheck, budget_checks, concurrency_checks, rate_limit_checks, read_ops
from tollway.governance.inventory import limit_view
from tollway.governance.model import (
    ESTIMATE,
    NANO_PER_USD,
    Governed,
    Kind,
    Level,
    Scope,
    budget_counter,
    request_counter,
    token_counter,
)
from tollway.store.entities import LIMIT_FIELDS, Diff, view
from tollway.store.snapshot import budget_policy, concurrency_policy, rate_limit_policy
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


# The entity's view names its owner itself: the checks built for reading carry no scope of their own.
_VIEW_SCOPE = Scope(Level.VIRTUAL_KEY, "", "")
_SIDE_PREFIX = {Kind.REQUESTS: "request_", Kind.TOKENS: "token_", Kind.BUDGET: "", Kind.IN_FLIGHT: ""}


class LiveUsage:
    """Budget, rate-limit and concurrency views waiting for their live usage.

    Each limit becomes its counter checks as the engine builds them, is read under the
    engine's windows (`read_ops`) and presented by `limit_view`: the one readout of
    "limit → counter → window → usage"; only the field names here are the entity views'.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[dict[str, Any], LimitCheck]] = []  # a view and a check to fill it from

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
        self._pending += [(out, check) for check in budget_checks(
            Governed(_VIEW_SCOPE, budget=budget_policy(row, ESTIMATE)))]
        return out

    def rate_limit(self, row: RateLimit | None) -> dict[str, Any] | None:
        if row is None:
            return None
        out: dict[str, Any] = {"id": row.id, "enforcement": row.enforcement, "on_insufficient": row.on_insufficient,
                               "mode": row.mode}
        for side in ("token", "request"):
            limit, duration = getattr(row, f"{side}_max_limit"), getattr(row, f"{side}_reset_duration")
            configured = limit is not None and duration is not None
            out |= {
                f"{side}_max_limit": limit, f"{side}_reset_duration": duration,
                f"{side}_current_usage": getattr(row, f"{side}_current_usage") if configured else None,
                f"{side}_reserved": 0 if configured else None,
                f"{side}_last_reset": iso(getattr(row, f"{side}_last_reset")) if configured else None,
                f"{side}_reset_at": None,
            }
        self._pending += [(out, check) for check in rate_limit_checks(
            Governed(_VIEW_SCOPE, rate_limit=rate_limit_policy(row, ESTIMATE)))]
        return out

    def concurrency(self, row: ConcurrencyLimit | None) -> dict[str, Any] | None:
        if row is None:
            return None
        out = {"id": row.id, "max_in_flight": row.max_in_flight, "queue_timeout_ms": row.queue_timeout_ms,
               "mode": row.mode, "in_flight": 0}
        self._pending += [(out, check) for check in concurrency_checks(
            Governed(_VIEW_SCOPE, concurrency=concurrency_policy(row)))]
        return out

    async def fill(self, store: CounterStore, now_ms: int) -> None:
        """Replace the stored usage in every view with the counter store's, in one read."""
        if not self._pending:
            return
        readings = await store.read(read_ops(tuple(check for _, check in self._pending), now_ms))
        for (out, check), reading in zip(self._pending, readings, strict=True):
            _fill(out, check, limit_view(check, None, reading, now_ms))
        self._pending.clear()


def _fill(out: dict[str, Any], check: LimitCheck, live: dict[str, Any]) -> None:
    """Copy ``live`` (a `limit_view`) into an entity view's fields for ``check``'s side."""
    if check.kind is Kind.IN_FLIGHT:
        out["in_flight"] = live["reserved"]
        return
    prefix = _SIDE_PREFIX[check.kind]
    out[f"{prefix}current_usage"] = live["used"]
    out["reserved" if check.kind is Kind.BUDGET else f"{prefix}reserved"] = live["reserved"]
    out[f"{prefix}last_reset"] = live["last_reset"]
    out[f"{prefix}reset_at"] = live["reset_at"]


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
