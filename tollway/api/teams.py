"""`/api/governance/teams`: teams, optionally under a customer, with their limits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from tollway.api.context import (
    CASCADE,
    RESET_USAGE,
    ApiWriter,
    PageDep,
    RuntimeDep,
    change,
    paginate,
    partial_update,
    read,
    search_filter,
)
from tollway.api.errors import conflict, not_found
from tollway.api.limits import LiveUsage, Which, iso, reset_route, update_limits
from tollway.api.owners import check_customer
from tollway.api.responses import Message, TeamEnvelope, TeamList
from tollway.api.schemas import TeamCreate, TeamUpdate
from tollway.api.virtual_keys import key_view
from tollway.store.tables import Team, VirtualKey, new_id

router = APIRouter(prefix="/api/governance/teams", tags=["teams"])

KIND = "team"
_OPTIONS = (selectinload(Team.budget), selectinload(Team.rate_limit))


def team_view(row: Team, live: LiveUsage) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "customer_id": row.customer_id,
            "budget": live.budget(row.budget), "rate_limit": live.rate_limit(row.rate_limit),
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


def load_team(session: Session, team_id: str) -> Team:
    row = session.scalars(select(Team).where(Team.id == team_id).options(*_OPTIONS)).one_or_none()
    if row is None:
        raise not_found("team", team_id)
    return row


def delete_keys(writer: ApiWriter, keys: list[VirtualKey]) -> None:
    """Delete keys (each audited) before the owner they reference."""
    for key in keys:
        writer.delete(key, "virtual_key", key.id, key_view(key, LiveUsage()))
    writer.session.flush()


def orphans_message(what: str, ident: str, parts: list[str]) -> str:
    return (f"{what} {ident!r} still has {' and '.join(parts)}: delete or move them first, "
            f"or pass ?cascade=true to delete them with it")


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _envelope(message: str, view: dict[str, Any]) -> dict[str, Any]:
    return {"message": message, "team": view}


@router.get("", response_model=TeamList, summary="List teams")
async def list_teams(
    runtime: RuntimeDep, page: PageDep, customer_id: str | None = None,
    search: Annotated[str | None, Query(description="Case-insensitive part of the id or name.")] = None,
) -> dict[str, Any]:
    live = LiveUsage()

    def query(session: Session) -> tuple[int, list[dict[str, Any]]]:
        statement = select(Team)
        if customer_id is not None:
            statement = statement.where(Team.customer_id == customer_id)
        if search:
            statement = statement.where(search_filter(search, Team.id, Team.name))
        total, rows = paginate(session, statement, page, (Team.id,), _OPTIONS)
        return total, [team_view(row, live) for row in rows]

    total, teams = await read(runtime, query)
    await live.fill(runtime.store, runtime.clock_ms())
    return {"teams": teams, "count": total, "limit": page.limit, "offset": page.offset}


@router.post("", status_code=201, response_model=TeamEnvelope, summary="Create a team")
async def create_team(body: TeamCreate, runtime: RuntimeDep) -> dict[str, Any]:
    team_id = body.id or "team-" + new_id()
    live = LiveUsage()

    def write(writer: ApiWriter) -> Team:
        if writer.session.get(Team, team_id) is not None:
            raise conflict(f"team {team_id!r} already exists")
        check_customer(writer.session, body.customer_id)
        row, diff = writer.upsert(None, Team, {"id": team_id}, {"name": body.name, "customer_id": body.customer_id})
        writer.sync_budget(row, body.budget, diff)
        writer.sync_rate_limit(row, body.rate_limit, diff)
        writer.record(row, KIND, team_id, diff)
        return row

    view = await change(runtime, write, lambda row: team_view(row, live))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("team created", view)


@router.get("/{team_id}", response_model=TeamEnvelope, summary="Get a team")
async def get_team(team_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    live = LiveUsage()
    view = await read(runtime, lambda session: team_view(load_team(session, team_id), live))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("team found", view)


@partial_update(router, "/{team_id}", response_model=TeamEnvelope, summary="Change a team (partial)")
async def update_team(team_id: str, body: TeamUpdate, runtime: RuntimeDep,
                      reset_usage: Annotated[bool, RESET_USAGE] = False) -> dict[str, Any]:
    live = LiveUsage()
    stated = body.model_fields_set

    def write(writer: ApiWriter) -> Team:
        row = load_team(writer.session, team_id)
        values = {name: getattr(body, name) for name in ("name", "customer_id") if name in stated}
        check_customer(writer.session, values.get("customer_id"))
        row, diff = writer.upsert(row, Team, {}, values)
        update_limits(writer, row, body, diff, reset_usage=reset_usage)
        writer.record(row, KIND, team_id, diff)
        return row

    view = await change(runtime, write, lambda row: team_view(row, live))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("team updated", view)


@router.delete("/{team_id}", response_model=Message, summary="Delete a team")
async def delete_team(team_id: str, runtime: RuntimeDep, cascade: Annotated[bool, CASCADE] = False) -> dict[str, Any]:
    """Deletes the team with its own budget and rate limit. A team that has virtual keys
    is 409 unless ``cascade=true``, which deletes its keys too."""
    deleted: list[str] = []

    def write(writer: ApiWriter) -> None:
        row = load_team(writer.session, team_id)
        keys = list(writer.session.scalars(select(VirtualKey).where(VirtualKey.team_id == team_id)))
        if keys and not cascade:
            raise conflict(orphans_message("team", team_id, [plural(len(keys), "virtual key")]))
        delete_keys(writer, keys)
        deleted.extend(key.id for key in keys)
        writer.delete(row, KIND, team_id, team_view(row, LiveUsage()))

    await change(runtime, write, lambda _: None)
    suffix = f" with its virtual keys {', '.join(map(repr, deleted))}" if deleted else ""
    return {"message": f"team {team_id!r} deleted{suffix}"}


def _reset(which: Which, label: str) -> Any:
    async def reset(team_id: str, runtime: RuntimeDep) -> dict[str, Any]:
        live = LiveUsage()
        view = await reset_route(runtime, lambda session: load_team(session, team_id), which, KIND, team_id,
                                 lambda row: team_view(row, live))
        await live.fill(runtime.store, runtime.clock_ms())
        return _envelope(f"{label} usage reset", view)

    return reset


router.add_api_route("/{team_id}/budget/reset", _reset("budget", "budget"), methods=["POST"],
                     response_model=TeamEnvelope, summary="Reset a team's budget usage")
router.add_api_route("/{team_id}/rate-limit/reset", _reset("rate_limit", "rate limit"), methods=["POST"],
                     response_model=TeamEnvelope, summary="Reset a team's rate-limit usage")
