"""`/api/governance/teams`: teams, optionally under a customer, with their limits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from tollway.api.context import CASCADE, RESET_USAGE, ApiWriter, PageDep, RuntimeDep, change, partial_update
from tollway.api.entity_routes import EntityRoutes
from tollway.api.errors import conflict
from tollway.api.limits import LiveUsage, iso, update_limits
from tollway.api.manager_scope import scope_teams
from tollway.api.owners import check_customer
from tollway.api.responses import Message, TeamEnvelope, TeamList
from tollway.api.schemas import TeamCreate, TeamUpdate
from tollway.api.virtual_keys import KEYS
from tollway.store.end_user_templates import template_view
from tollway.store.tables import Team, VirtualKey, new_id

router = APIRouter(prefix="/api/governance/teams", tags=["teams"])

KIND = "team"


def team_view(row: Team, live: LiveUsage) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "customer_id": row.customer_id,
            "budget": live.budget(row.budget), "rate_limit": live.rate_limit(row.rate_limit),
            "concurrency": live.concurrency(row.concurrency), "end_user_limits": template_view(row.end_user_limits),
            "managed_by": row.managed_by, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


TEAMS = EntityRoutes(Team, KIND, param="team_id", view=team_view, envelope_model=TeamEnvelope,
                     searched=(Team.id, Team.name))


def delete_keys(writer: ApiWriter, keys: list[VirtualKey]) -> None:
    """Delete keys (each audited) before the owner they reference."""
    for key in keys:
        KEYS.delete(writer, key, key.id)
    writer.session.flush()


def orphans_message(what: str, ident: str, parts: list[str]) -> str:
    return (f"{what} {ident!r} still has {' and '.join(parts)}: delete or move them first, "
            f"or pass ?cascade=true to delete them with it")


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@router.get("", response_model=TeamList, summary="List teams")
async def list_teams(
    runtime: RuntimeDep, page: PageDep, customer_id: str | None = None,
    search: Annotated[str | None, Query(description="Case-insensitive part of the id or name.")] = None,
) -> dict[str, Any]:
    statement = select(Team)
    if customer_id is not None:
        statement = statement.where(Team.customer_id == customer_id)
    return await TEAMS.page(runtime, page, scope_teams(statement), search)


@router.post("", status_code=201, response_model=TeamEnvelope, summary="Create a team")
async def create_team(body: TeamCreate, runtime: RuntimeDep) -> dict[str, Any]:
    team_id = body.id or "team-" + new_id()

    def write(writer: ApiWriter) -> Team:
        TEAMS.check_new(writer.session, team_id)
        check_customer(writer.session, body.customer_id)
        row, diff = TEAMS.insert(writer, {"id": team_id}, {"name": body.name, "customer_id": body.customer_id}, body)
        writer.record(row, KIND, team_id, diff)
        return row

    return await TEAMS.changed(runtime, "team created", write)


TEAMS.add_get(router, "get_team")


@partial_update(router, "/{team_id}", response_model=TeamEnvelope, summary="Change a team (partial)")
async def update_team(team_id: str, body: TeamUpdate, runtime: RuntimeDep,
                      reset_usage: Annotated[bool, RESET_USAGE] = False) -> dict[str, Any]:
    stated = body.model_fields_set

    def write(writer: ApiWriter) -> Team:
        row = TEAMS.load_to_change(writer.session, team_id)
        values = {name: getattr(body, name) for name in ("name", "customer_id") if name in stated}
        check_customer(writer.session, values.get("customer_id"))
        row, diff = writer.upsert(row, Team, {}, values)
        update_limits(writer, row, body, diff, reset_usage=reset_usage)
        writer.record(row, KIND, team_id, diff)
        return row

    return await TEAMS.changed(runtime, "team updated", write)


@router.delete("/{team_id}", response_model=Message, summary="Delete a team")
async def delete_team(team_id: str, runtime: RuntimeDep, cascade: Annotated[bool, CASCADE] = False) -> dict[str, Any]:
    """Deletes the team with its own budget and rate limit. A team that has virtual keys
    is 409 unless ``cascade=true``, which deletes its keys too."""
    deleted: list[str] = []

    def write(writer: ApiWriter) -> None:
        row = TEAMS.load_to_change(writer.session, team_id)
        keys = list(writer.session.scalars(select(VirtualKey).where(VirtualKey.team_id == team_id)))
        if keys and not cascade:
            raise conflict(orphans_message("team", team_id, [plural(len(keys), "virtual key")]))
        delete_keys(writer, keys)
        deleted.extend(key.id for key in keys)
        TEAMS.delete(writer, row, team_id)

    await change(runtime, write, lambda _: None)
    suffix = f" with its virtual keys {', '.join(map(repr, deleted))}" if deleted else ""
    return {"message": f"team {team_id!r} deleted{suffix}"}


TEAMS.add_resets(router)
