"""`/api/governance/customers`: the top of the hierarchy, with their limits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from tollway.api.context import CASCADE, RESET_USAGE, ApiWriter, PageDep, RuntimeDep, change, partial_update
from tollway.api.entity_routes import EntityRoutes
from tollway.api.errors import conflict
from tollway.api.limits import LiveUsage, iso, update_limits
from tollway.api.manager_scope import scope_customers
from tollway.api.responses import CustomerEnvelope, CustomerList, Message
from tollway.api.schemas import CustomerCreate, CustomerUpdate
from tollway.api.teams import TEAMS, delete_keys, orphans_message, plural
from tollway.store.end_user_templates import template_view
from tollway.store.tables import Customer, Team, VirtualKey, new_id

router = APIRouter(prefix="/api/governance/customers", tags=["customers"])

KIND = "customer"


def customer_view(row: Customer, live: LiveUsage) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "budget": live.budget(row.budget),
            "rate_limit": live.rate_limit(row.rate_limit), "concurrency": live.concurrency(row.concurrency),
            "end_user_limits": template_view(row.end_user_limits), "managed_by": row.managed_by,
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


CUSTOMERS = EntityRoutes(Customer, KIND, param="customer_id", view=customer_view, envelope_model=CustomerEnvelope,
                         searched=(Customer.id, Customer.name))


@router.get("", response_model=CustomerList, summary="List customers")
async def list_customers(
    runtime: RuntimeDep, page: PageDep,
    search: Annotated[str | None, Query(description="Case-insensitive part of the id or name.")] = None,
) -> dict[str, Any]:
    return await CUSTOMERS.page(runtime, page, scope_customers(select(Customer)), search)


@router.post("", status_code=201, response_model=CustomerEnvelope, summary="Create a customer")
async def create_customer(body: CustomerCreate, runtime: RuntimeDep) -> dict[str, Any]:
    customer_id = body.id or "customer-" + new_id()

    def write(writer: ApiWriter) -> Customer:
        CUSTOMERS.check_new(writer.session, customer_id)
        row, diff = CUSTOMERS.insert(writer, {"id": customer_id}, {"name": body.name}, body)
        writer.record(row, KIND, customer_id, diff)
        return row

    return await CUSTOMERS.changed(runtime, "customer created", write)


CUSTOMERS.add_get(router, "get_customer")


@partial_update(router, "/{customer_id}", response_model=CustomerEnvelope,
                  summary="Change a customer (partial)")
async def update_customer(customer_id: str, body: CustomerUpdate, runtime: RuntimeDep,
                          reset_usage: Annotated[bool, RESET_USAGE] = False) -> dict[str, Any]:
    def write(writer: ApiWriter) -> Customer:
        row = CUSTOMERS.load_to_change(writer.session, customer_id)
        values = {"name": body.name} if "name" in body.model_fields_set else {}
        row, diff = writer.upsert(row, Customer, {}, values)
        update_limits(writer, row, body, diff, reset_usage=reset_usage)
        writer.record(row, KIND, customer_id, diff)
        return row

    return await CUSTOMERS.changed(runtime, "customer updated", write)


@router.delete("/{customer_id}", response_model=Message, summary="Delete a customer")
async def delete_customer(customer_id: str, runtime: RuntimeDep,
                          cascade: Annotated[bool, CASCADE] = False) -> dict[str, Any]:
    """Deletes the customer with its own budget and rate limit. A customer with teams or
    virtual keys is 409 unless ``cascade=true``, which deletes its teams, their keys and
    its own keys too."""

    def write(writer: ApiWriter) -> None:
        session = writer.session
        row = CUSTOMERS.load_to_change(session, customer_id)
        teams = list(session.scalars(select(Team).where(Team.customer_id == customer_id)))
        team_ids = [team.id for team in teams]
        keys = list(session.scalars(select(VirtualKey).where(
            (VirtualKey.customer_id == customer_id) | VirtualKey.team_id.in_(team_ids))))
        if (teams or keys) and not cascade:
            parts = [plural(len(items), noun) for items, noun in ((teams, "team"), (keys, "virtual key")) if items]
            raise conflict(orphans_message("customer", customer_id, parts))
        delete_keys(writer, keys)
        for team in teams:
            TEAMS.delete(writer, team, team.id)
        session.flush()
        CUSTOMERS.delete(writer, row, customer_id)

    await change(runtime, write, lambda _: None)
    return {"message": f"customer {customer_id!r} deleted"}


CUSTOMERS.add_resets(router)
