"""`/api/logs`: the request log, filtered and paginated, newest first.

Records the gateway still holds in its write buffer are flushed first, so a request
that has been answered is listed (the log is otherwise written in batches each second).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from tollway.api.context import ManagedRuntime, PageDep, RuntimeDep, read
from tollway.api.errors import bad_request, not_found
from tollway.api.limits import iso
from tollway.api.responses import LogEntryEnvelope, LogList
from tollway.governance.tags import BadTag, normalise_tag
from tollway.store.log_count import logged_count
from tollway.store.report_reader import run_report
from tollway.store.tables import RequestLog, RequestLogTag

router = APIRouter(prefix="/api", tags=["request log"])


_EQUALS = ("virtual_key_id", "team_id", "customer_id", "provider", "model", "status", "decision", "route", "end_user")


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which request-log rows to look at; every field is optional."""

    virtual_key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    provider: str | None = None
    model: str | None = None
    status: int | None = None
    decision: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    route: str | None = None
    tag: str | None = None  # normalised (`tollway.governance.tags`)
    end_user: str | None = None  # the end user the requests named (SPEC §8)

    def equals(self) -> dict[str, Any]:
        """The request-log columns this filter fixes, with their values."""
        return {name: getattr(self, name) for name in _EQUALS if getattr(self, name) is not None}

    def apply(self, statement: Select[Any]) -> Select[Any]:
        for name in _EQUALS:
            value = getattr(self, name)
            if value is not None:
                statement = statement.where(getattr(RequestLog, name) == value)
        if self.start is not None:
            statement = statement.where(RequestLog.at >= self.start)
        if self.end is not None:
            statement = statement.where(RequestLog.at < self.end)
        if self.tag is not None:
            statement = statement.where(exists().where(
                RequestLogTag.tag == self.tag, same_request(RequestLogTag)))
        return statement


def same_request(tags: type[RequestLogTag]) -> Any:
    """The condition joining a `request_log_tags` row to its request's row."""
    return and_(tags.at == RequestLog.at, tags.request_id == RequestLog.request_id)


def utc(moment: datetime | None) -> datetime | None:
    """A query time as aware UTC (a time without an offset is taken as UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def log_filter(
    virtual_key_id: str | None = None, team_id: str | None = None, customer_id: str | None = None,
    provider: str | None = None, model: str | None = None,
    status: Annotated[int | None, Query(ge=100, le=599, description="An HTTP status.")] = None,
    decision: Annotated[str | None, Query(description="allow, or a denial such as request_limited.")] = None,
    start: Annotated[datetime | None, Query(description="From this time (ISO-8601; UTC when no offset).")] = None,
    end: Annotated[datetime | None, Query(description="Before this time.")] = None,
    route: Annotated[str | None, Query(description="The API: chat, messages, responses, images.generations, "
                                                   "audio.transcriptions, audio.speech, moderations ... "
                                                   "(docs/routes.md).")] = None,
    tag: Annotated[str | None, Query(description="Requests carrying this tag (compared as requests' tags are: "
                                                 "trimmed, lower-cased).")] = None,
    end_user: Annotated[str | None, Query(description="The end user the requests named (x-tollway-user, the "
                                                      "OpenAI user field or Anthropic metadata.user_id).")] = None,
) -> LogFilter:
    start, end = utc(start), utc(end)
    if start is not None and end is not None and start >= end:
        raise bad_request("start must be before end", "start")
    if tag is not None:
        try:
            tag = normalise_tag(tag)
        except BadTag as exc:
            raise bad_request(f"tag: {exc}", "tag") from None
    return LogFilter(virtual_key_id, team_id, customer_id, provider, model, status, decision, start, end, route, tag,
                     end_user)


LogFilterDep = Annotated[LogFilter, Depends(log_filter)]


@dataclass(frozen=True, slots=True)
class WouldDenyFilter:
    """The request log's would-be denials (SPEC §8 shadow limits): rows that a shadow limit
    would have denied, optionally of one level or entity. Kept apart from `LogFilter`,
    which the spend report shares: spend rollups know nothing of shadow limits."""

    would_deny: bool | None = None
    level: str | None = None
    entity_id: str | None = None

    @property
    def active(self) -> bool:
        return (self.would_deny, self.level, self.entity_id) != (None, None, None)

    def apply(self, statement: Select[Any]) -> Select[Any]:
        if self.would_deny is not None:
            column = RequestLog.would_deny
            statement = statement.where(column.is_not(None) if self.would_deny else column.is_(None))
        if self.level is not None:
            statement = statement.where(RequestLog.would_deny_level == self.level)
        if self.entity_id is not None:
            statement = statement.where(RequestLog.would_deny_id == self.entity_id)
        return statement


def _would_deny_filter(
    would_deny: Annotated[bool | None, Query(description="true: only requests a shadow limit would have denied; "
                                                         "false: only the others.")] = None,
    would_deny_level: Annotated[str | None, Query(description="The level of that shadow limit (e.g. team).")] = None,
    would_deny_id: Annotated[str | None, Query(description="The id of the entity that owns that shadow limit.")] = None,
) -> WouldDenyFilter:
    return WouldDenyFilter(would_deny, would_deny_level, would_deny_id)


WouldDenyDep = Annotated[WouldDenyFilter, Depends(_would_deny_filter)]


async def flush_request_log(runtime: ManagedRuntime) -> None:
    """Write what the gateway buffered, so reads include requests already answered."""
    if runtime.log_writer is not None:
        await runtime.log_writer.flush()


def log_view(row: RequestLog) -> dict[str, Any]:
    return {
        "id": row.id, "at": iso(row.at), "request_id": row.request_id, "virtual_key_id": row.virtual_key_id,
        "team_id": row.team_id, "customer_id": row.customer_id, "provider": row.provider, "model": row.model,
        "status": row.status, "decision": row.decision, "denied_level": row.denied_level,
        "denied_id": row.denied_id, "would_deny": row.would_deny, "would_deny_level": row.would_deny_level,
        "would_deny_id": row.would_deny_id, "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
        "cached_tokens": row.cached_tokens, "cost": float(row.cost), "latency_ms": row.latency_ms,
        "stream": row.stream, "error": row.error, "route": row.route, "end_user": row.end_user,
        "tags": row.tags.split(",") if row.tags else [],
    }


BEFORE_ID = Query(ge=1, le=2**63 - 1, description="Keyset pagination: the entries after this one (newest first); "
                                                   "pass the previous page's `next_before_id`. Cheap at any depth, "
                                                   "unlike `offset`.")


@router.get("/logs", response_model=LogList, summary="The request log, newest first")
async def logs(runtime: RuntimeDep, page: PageDep, where: LogFilterDep, shadow: WouldDenyDep,
               before_id: Annotated[int | None, BEFORE_ID] = None) -> dict[str, Any]:
    """``count`` is every entry matching the filters (from the spend rollups, unless a
    status, a decision with another filter or a would-deny filter needs the log itself)."""
    await flush_request_log(runtime)

    def query(session: Session) -> list[dict[str, Any]]:
        from_log: Select[Any] = shadow.apply(where.apply(select(RequestLog)))
        if before_id is not None:
            cursor = session.get(RequestLog, before_id)
            if cursor is None:
                raise bad_request(f"before_id {before_id} names no request-log entry", "before_id")
            from_log = from_log.where(RequestLog.at <= cursor.at,
                                      or_(RequestLog.at < cursor.at, RequestLog.id < cursor.id))
        from_log = from_log.order_by(RequestLog.at.desc(), RequestLog.id.desc()).limit(page.limit).offset(page.offset)
        return [log_view(row) for row in session.scalars(from_log)]

    entries = await read(runtime, query)
    total = await _count(runtime, where, shadow)
    following = entries[-1]["id"] if len(entries) == page.limit else None
    return {"logs": entries, "count": total, "limit": page.limit, "offset": page.offset, "next_before_id": following}


async def _count(runtime: ManagedRuntime, where: LogFilter, shadow: WouldDenyFilter) -> int:
    if shadow.active:  # no rollup knows of shadow limits
        def count(session: Session) -> int:
            matching = shadow.apply(where.apply(select(RequestLog.id)))
            return int(session.scalar(select(func.count()).select_from(matching.subquery())) or 0)

        return await read(runtime, count)
    equals = where.equals()
    return await run_report(runtime.db, lambda connection: logged_count(connection, equals, where.start, where.end,
                                                                        where.tag))


@router.get("/logs/{log_id}", response_model=LogEntryEnvelope, summary="One request-log entry")
async def log_entry(log_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="The entry's id (a 64-bit row id).")],
                    runtime: RuntimeDep) -> dict[str, Any]:
    await flush_request_log(runtime)

    def query(session: Session) -> dict[str, Any] | None:
        row = session.get(RequestLog, log_id)
        return None if row is None else log_view(row)

    entry = await read(runtime, query)
    if entry is None:
        raise not_found("request-log entry", str(log_id))
    return {"log": entry}
