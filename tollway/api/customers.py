"""`/api/governance/customers`: the top of the hierarchy, with their limits."""

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
from tollway.api.responses import CustomerEnvelope, CustomerList, Message
from tollway.api.schemas import CustomerCreate, CustomerUpdate
from tollway.api.teams import delete_keys, orphans_message, plural, team_view
from tollway.store.tables import Customer, Team, VirtualKey, new_id

router = APIRouter(prefix="/api/governance/customers", tags=["customers"])

KIND = "customer"
_OPTIONS = (selectinload(Customer.budget), selectinload(Customer.rate_limit))


def customer_view(row: Customer, live: LiveUsage) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "budget": live.budget(row.budget),
            "rate_limit": live.rate_limit(row.rate_limit),
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


def load_customer(session: Session, customer_id: str) -> Customer:
    row = session.scalars(select(Customer).where(Customer.id == customer_id).options(*_OPTIONS)).one_or_none()
    if row is None:
        raise not_found("customer", customer_id)
    return row


def _envelope(message: str, view: dict[str, Any]) -> dict[str, Any]:
    return {"message": message, "customer": view}


@router.get("", response_model=CustomerList, summary="List customers")
async def list_customers(
    runtime: RuntimeDep, page: PageDep,
    search: Annotated[str | None, Query(description="Case-insensitive part of the id or name.")] = None,
) -> dict[str, Any]:
    live = LiveUsage()

    def query(session: Session) -> tuple[int, list[dict[str, Any]]]:
        statement = select(Customer)
        if search:
            statement = statement.where(search_filter(search, Customer.id, Customer.name))
        total, rows = paginate(session, statement, page, (Customer.id,), _OPTIONS)
        return total, [customer_view(row, live) for row in rows]

    total, customers = await read(runtime, query)
    await live.fill(runtime.store, runtime.clock_ms())
    return {"customers": customers, "count": total, "limit": page.limit, "offset": page.offset}


@router.post("", status_code=201, response_model=CustomerEnvelope, summary="Create a customer")
async def create_customer(body: CustomerCreate, runtime: RuntimeDep) -> dict[str, Any]:
    customer_id = body.id or "customer-" + new_id()
    live = LiveUsage()

    def write(writer: ApiWriter) -> Customer:
        if writer.session.get(Customer, customer_id) is not None:
            raise conflict(f"customer {customer_id!r} already exists")
        row, diff = writer.upsert(None, Customer, {"id": customer_id}, {"name": body.name})
        writer.sync_budget(row, body.budget, diff)
        writer.sync_rate_limit(row, body.rate_limit, diff)
        writer.record(row, KIND, customer_id, diff)
        return row

    view = await change(runtime, write, lambda row: customer_view(row, live))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("customer created", view)


@router.get("/{customer_id}", response_model=CustomerEnvelope, summary="Get a customer")
async def get_customer(customer_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    live = LiveUsage()
    view = await read(runtime, lambda session: customer_view(load_customer(session, customer_id), live))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("customer found", view)


@partial_update(router, "/{customer_id}", response_model=CustomerEnvelope,
                  summary="Change a customer (partial)")
async def update_customer(customer_id: str, body: CustomerUpdate, runtime: RuntimeDep,
                          reset_usage: Annotated[bool, RESET_USAGE] = False) -> dict[str, Any]:
    live = LiveUsage()

    def write(writer: ApiWriter) -> Customer:
        row = load_customer(writer.session, customer_id)
        values = {"name": body.name} if "name" in body.model_fields_set else {}
        row, diff = writer.upsert(row, Customer, {}, values)
        update_limits(writer, row, body, diff, reset_usage=reset_usage)
        writer.record(row, KIND, customer_id, diff)
        return row

    view = await change(runtime, write, lambda row: customer_view(row, live))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("customer updated", view)


@router.delete("/{customer_id}", response_model=Message, summary="Delete a customer")
async def delete_customer(customer_id: str, runtime: RuntimeDep,
                          cascade: Annotated[bool, CASCADE] = False) -> dict[str, Any]:
    """Deletes the customer with its own budget and rate limit. A customer with teams or
    virtual keys is 409 unless ``cascade=true``, which deletes its teams, their keys and
    its own keys too."""

    def write(writer: ApiWriter) -> None:
        session = writer.session
        row = load_customer(session, customer_id)
        teams = list(session.scalars(select(Team).where(Team.customer_id == customer_id)))
        team_ids = [team.id for team in teams]
        keys = list(session.scalars(select(VirtualKey).where(
            (VirtualKey.customer_id == customer_id) | VirtualKey.team_id.in_(team_ids))))
        if (teams or keys) and not cascade:
            parts = [plural(len(items), noun) for items, noun in ((teams, "team"), (keys, "virtual key")) if items]
            raise conflict(orphans_message("customer", customer_id, parts))
        delete_keys(writer, keys)
        for team in teams:
            writer.delete(team, "team", team.id, team_view(team, LiveUsage()))
        session.flush()
        writer.delete(row, KIND, customer_id, customer_view(row, LiveUsage()))

    await change(runtime, write, lambda _: None)
    return {"message": f"customer {customer_id!r} deleted"}


def _reset(which: Which, label: str) -> Any:
    async def reset(customer_id: str, runtime: RuntimeDep) -> dict[str, Any]:
        live = LiveUsage()
        view = await reset_route(runtime, lambda session: load_customer(session, customer_id), which, KIND,
                                 customer_id, lambda row: customer_view(row, live))
        await live.fill(runtime.store, runtime.clock_ms())
        return _envelope(f"{label} usage reset", view)

    return reset


router.add_api_route("/{customer_id}/budget/reset", _reset("budget", "budget"), methods=["POST"],
                     response_model=CustomerEnvelope, summary="Reset a customer's budget usage")
router.add_api_route("/{customer_id}/rate-limit/reset", _reset("rate_limit", "rate limit"), methods=["POST"],
                     response_model=CustomerEnvelope, summary="Reset a customer's rate-limit usage")
