"""`/api/governance/end-users`: the end users requests named (listed, searched by prefix,
ranked by spend, from the request log); and `/api/governance/{teams|customers|virtual-keys}/
{id}/end-users/{end_user}`: one end user's limits under that owner's template, with the
operator's override of them (SPEC §8 "end user").

An override is kept with its owner's entity: writing one is a change of that owner (its
policy is rebuilt with its overrides on every node, `tollway.store.policy_changes`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tollway.api.context import ApiWriter, ManagedRuntime, PageDep, RuntimeDep, change, read
from tollway.api.errors import bad_request, conflict, from_validation, not_found
from tollway.api.limits import iso
from tollway.api.logs import flush_request_log, utc
from tollway.api.ownership import refuse_config_managed
from tollway.api.responses import Message
from tollway.config.schema import EndUserLimitsConfig
from tollway.governance.end_users import MAX_END_USER_LENGTH, end_user_checks
from tollway.governance.engine import read_ops
from tollway.governance.inventory import limit_view
from tollway.governance.model import ESTIMATE, Level, Scope
from tollway.store.end_user_templates import limits_value, template_policy, template_view
from tollway.store.tables import Customer, EndUserOverride, RequestLog, Team, VirtualKey

router = APIRouter(prefix="/api/governance/end-users", tags=["end users"])
# One end user under one owner's template: beside that owner's own routes.
owner_router = APIRouter(tags=["end users"])

_OWNERS: dict[str, type[Customer | Team | VirtualKey]] = {"virtual_key": VirtualKey, "team": Team, "customer": Customer}
_OWNER_LABEL = {"virtual_key": "virtual key", "team": "team", "customer": "customer"}
EndUserPath = Annotated[str, Path(min_length=1, max_length=MAX_END_USER_LENGTH, description="The end user's id.")]


@router.get("", summary="End users, ranked by spend or by id")
async def list_end_users(
    runtime: RuntimeDep, page: PageDep,
    virtual_key_id: str | None = None, team_id: str | None = None, customer_id: str | None = None,
    search: Annotated[str | None, Query(max_length=MAX_END_USER_LENGTH,
                                        description="The start of the end user's id (case-sensitive).")] = None,
    sort: Annotated[Literal["spend", "requests", "end_user", "last_seen"], Query(
        description="spend (highest first, the default), requests, last_seen (latest first) or end_user.")] = "spend",
    start: Annotated[datetime | None, Query(description="From this time (ISO-8601; UTC when no offset).")] = None,
    end: Annotated[datetime | None, Query(description="Before this time.")] = None,
) -> dict[str, Any]:
    """Every end user the request log names, with their spend (USD), requests and when
    they were last seen; narrowed to a key's, team's or customer's requests, and to ids
    starting with ``search``."""
    await flush_request_log(runtime)
    start, end = utc(start), utc(end)
    if start is not None and end is not None and start >= end:
        raise bad_request("start must be before end", "start")
    spend = func.coalesce(func.sum(RequestLog.cost), 0).label("spend")
    requests = func.count().label("requests")
    last_seen = func.max(RequestLog.at).label("last_seen")
    statement = select(RequestLog.end_user, spend, requests, last_seen).where(RequestLog.end_user.is_not(None))
    for column, value in ((RequestLog.virtual_key_id, virtual_key_id), (RequestLog.team_id, team_id),
                          (RequestLog.customer_id, customer_id)):
        if value is not None:
            statement = statement.where(column == value)
    if search:
        statement = statement.where(RequestLog.end_user.startswith(search, autoescape=True))
    if start is not None:
        statement = statement.where(RequestLog.at >= start)
    if end is not None:
        statement = statement.where(RequestLog.at < end)
    statement = statement.group_by(RequestLog.end_user)
    ranked: dict[str, tuple[Any, ...]] = {
        "spend": (spend.desc(), RequestLog.end_user), "requests": (requests.desc(), RequestLog.end_user),
        "last_seen": (last_seen.desc(), RequestLog.end_user), "end_user": (RequestLog.end_user,)}
    order = ranked[sort]

    def query(session: Session) -> tuple[int, list[dict[str, Any]]]:
        total = session.scalar(select(func.count()).select_from(statement.subquery()))
        rows = session.execute(statement.order_by(*order).limit(page.limit).offset(page.offset)).all()
        return int(total or 0), [{"end_user": row.end_user, "spend": float(Decimal(str(row.spend))),
                                  "requests": row.requests, "last_seen": iso(utc(row.last_seen))} for row in rows]

    total, entries = await read(runtime, query)
    return {"end_users": entries, "count": total, "limit": page.limit, "offset": page.offset}


async def _get_end_user(runtime: ManagedRuntime, owner_level: str, owner_id: str, end_user: str) -> dict[str, Any]:
    return await _end_user_view(runtime, owner_level, owner_id, end_user)


async def _put_end_user(runtime: ManagedRuntime, owner_level: str, owner_id: str, end_user: str,
                        body: dict[str, Any]) -> dict[str, Any]:
    """The override replaces the parts it states (budget, rate_limit, concurrency) for this
    end user only, on the same counters: their usage so far counts against the new limits."""

    def write(writer: ApiWriter) -> None:
        session = writer.session
        _owner_with_template(session, owner_level, owner_id, changing=True)
        try:  # validated after the owner: a config-managed owner is refused whatever the body
            limits = limits_value(EndUserLimitsConfig.model_validate(body))
        except ValidationError as exc:
            raise from_validation(exc) from None
        row = session.get(EndUserOverride, (owner_level, owner_id, end_user))
        before = None if row is None else dict(row.limits)
        if row is None:
            session.add(EndUserOverride(owner_level=owner_level, owner_id=owner_id, end_user=end_user, limits=limits,
                                        created_at=writer.now, updated_at=writer.now))
        elif row.limits != limits:
            row.limits, row.updated_at = limits, writer.now
        else:
            return
        # Audited as a change of the owner: its policy (with its overrides) is what nodes rebuild.
        writer.audit("create" if before is None else "update", owner_level, owner_id,
                     {"end_user_override": {end_user: before}}, {"end_user_override": {end_user: limits}})

    await change(runtime, write, lambda _: None)
    return await _end_user_view(runtime, owner_level, owner_id, end_user)


async def _delete_end_user(runtime: ManagedRuntime, owner_level: str, owner_id: str, end_user: str) -> dict[str, Any]:
    def write(writer: ApiWriter) -> None:
        session = writer.session
        _owner_with_template(session, owner_level, owner_id, changing=True, template=False)
        row = session.get(EndUserOverride, (owner_level, owner_id, end_user))
        if row is None:
            raise not_found("end-user override", f"{owner_level}/{owner_id}/{end_user}")
        before = dict(row.limits)
        session.delete(row)
        writer.audit("update", owner_level, owner_id, {"end_user_override": {end_user: before}},
                     {"end_user_override": {end_user: None}})

    await change(runtime, write, lambda _: None)
    return {"message": f"the override of end user {end_user!r} of {_OWNER_LABEL[owner_level]} {owner_id!r} removed"}


# Validated in the route, after the owner (see `_put_end_user`): typed here as an object.
OverrideBody = Annotated[dict[str, Any], Body(description="The parts to override, in the end_user_limits shape: "
                                                          "{budget?, rate_limit?, concurrency?}.")]


def _add_owner_routes(collection: str, owner_level: str, param: str) -> None:
    """GET, PUT and DELETE of one end user under the template of one owner of this kind
    (``/api/governance/teams/{team_id}/end-users/{end_user}`` …)."""
    path = f"/api/governance/{collection}/{{{param}}}/end-users/{{end_user}}"
    label = _OWNER_LABEL[owner_level]

    async def get_one(request: Request, end_user: EndUserPath, runtime: RuntimeDep) -> dict[str, Any]:
        return await _get_end_user(runtime, owner_level, request.path_params[param], end_user)

    async def put_one(request: Request, end_user: EndUserPath, body: OverrideBody, runtime: RuntimeDep) -> dict[str, Any]:
        return await _put_end_user(runtime, owner_level, request.path_params[param], end_user, body)

    async def delete_one(request: Request, end_user: EndUserPath, runtime: RuntimeDep) -> dict[str, Any]:
        return await _delete_end_user(runtime, owner_level, request.path_params[param], end_user)

    owner_router.add_api_route(path, get_one, methods=["GET"], name=f"get_{owner_level}_end_user",
                         summary=f"One end user's limits under a {label}'s template, with live usage")
    owner_router.add_api_route(path, put_one, methods=["PUT"], name=f"put_{owner_level}_end_user",
                         summary=f"Give one end user of a {label} other limits than the template's")
    owner_router.add_api_route(path, delete_one, methods=["DELETE"], name=f"delete_{owner_level}_end_user",
                         response_model=Message, summary=f"Remove the override of one end user of a {label}")


for _collection, _level, _param in (("virtual-keys", "virtual_key", "key_id"), ("teams", "team", "team_id"),
                                    ("customers", "customer", "customer_id")):
    _add_owner_routes(_collection, _level, _param)


def _owner_with_template(session: Session, owner_level: str, owner_id: str, *, changing: bool = False,
                         template: bool = True) -> Any:
    """The owner row; 404 when there is none; when ``changing``, 409 ``managed_by_config``
    when the config file manages it (its end users' overrides are a change of it); with
    ``template``, 409 when it has no ``end_user_limits`` to override."""
    row = session.get(_OWNERS[owner_level], owner_id)
    if row is None:
        raise not_found(_OWNER_LABEL[owner_level], owner_id)
    if changing:
        refuse_config_managed(row, _OWNER_LABEL[owner_level], owner_id, "changed (its end users' overrides)")
    if template and row.end_user_limits is None:
        raise conflict(f"{_OWNER_LABEL[owner_level]} {owner_id!r} has no end_user_limits: set its template first")
    return row


async def _end_user_view(runtime: ManagedRuntime, owner_level: str, owner_id: str, end_user: str) -> dict[str, Any]:
    """The owner's template, the end user's override and the limits they make, with the
    counters' live usage (the same checks the engine builds)."""
    def query(session: Session) -> tuple[dict[str, Any], dict[str, Any] | None]:
        owner = _owner_with_template(session, owner_level, owner_id)
        row = session.get(EndUserOverride, (owner_level, owner_id, end_user))
        return dict(owner.end_user_limits), None if row is None else dict(row.limits)

    template, override = await read(runtime, query)
    scope = Scope(Level(owner_level), owner_id, owner_id)
    policy = template_policy(template, scope, ESTIMATE, {end_user: override} if override else None)
    found = end_user_checks((policy,), end_user)
    checks = (*found.rate_limits, *found.budgets, *found.concurrency)
    now = runtime.clock_ms()
    readings = await runtime.store.read(read_ops(checks, now))
    return {"owner_level": owner_level, "owner_id": owner_id, "end_user": end_user,
            "template": template_view(template), "override": override,
            "limits": [limit_view(check, None, reading, now) for check, reading in zip(checks, readings)]}

