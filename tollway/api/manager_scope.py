"""What a manager token may touch: the keys of its team (or of its customer and the
customer's teams), and for a customer manager its teams; always within the caps an admin
set on the scope.

The caps: a budget, rate limit or concurrency limit a manager sets (on a key, one of its
provider configs, or a customer manager's team) may not exceed the same limit of the
entity it belongs to, nor of that entity's customer. A limit the admin left unset caps
nothing. A manager cannot move a key or team to another owner, and cannot change or reset
the limits of its scope itself (those are the caps).

Checks that need the row named in the path load it; a row that is missing or outside the
scope both answer 403, so a manager learns nothing about other teams' ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import false, or_, select
from sqlalchemy.orm import Session, selectinload

from tollway.api.errors import ApiError
from tollway.api.principal import MANAGER, Principal, current_principal
from tollway.store.tables import Customer, Team, VirtualKey

Owner = tuple[str | None, str | None]  # (team_id, customer_id)


def forbidden(principal: Principal, message: str) -> ApiError:
    return ApiError(403, f"{principal.describe()} (token {principal.token_id!r}): {message}", kind="forbidden")


# -- list filters (the list routes call these) -------------------------------------------------

def _customer_teams(customer_id: str | None) -> Any:
    return select(Team.id).where(Team.customer_id == customer_id)


def scope_keys(statement: Any) -> Any:
    """``statement`` over virtual keys, narrowed to the current manager's scope."""
    principal = current_principal()
    if principal is None or principal.role != MANAGER:
        return statement
    if principal.scope_type == "team":
        return statement.where(VirtualKey.team_id == principal.scope_id)
    return statement.where(or_(VirtualKey.customer_id == principal.scope_id,
                               VirtualKey.team_id.in_(_customer_teams(principal.scope_id))))


def scope_teams(statement: Any) -> Any:
    principal = current_principal()
    if principal is None or principal.role != MANAGER:
        return statement
    if principal.scope_type == "team":
        return statement.where(Team.id == principal.scope_id)
    return statement.where(Team.customer_id == principal.scope_id)


def scope_customers(statement: Any) -> Any:
    principal = current_principal()
    if principal is None or principal.role != MANAGER:
        return statement
    if principal.scope_type == "customer":
        return statement.where(Customer.id == principal.scope_id)
    return statement.where(false())


# -- ownership --------------------------------------------------------------------------------

def owner_in_scope(session: Session, principal: Principal, owner: Owner) -> bool:
    """Whether a key or team owned by ``owner`` lies in the manager's scope."""
    team_id, customer_id = owner
    if principal.scope_type == "team":
        return team_id == principal.scope_id and customer_id is None
    if customer_id is not None:
        return customer_id == principal.scope_id and team_id is None
    if team_id is None:
        return False
    return session.scalar(select(Team.customer_id).where(Team.id == team_id)) == principal.scope_id


def key_owner(session: Session, principal: Principal, key_id: str) -> Owner:
    """The owner of key ``key_id`` when it is in scope; 403 otherwise (or when missing)."""
    row = session.execute(select(VirtualKey.team_id, VirtualKey.customer_id).where(VirtualKey.id == key_id)).first()
    if row is None or not owner_in_scope(session, principal, (row.team_id, row.customer_id)):
        raise forbidden(principal, f"virtual key {key_id!r} is not in your scope")
    return row.team_id, row.customer_id


def team_of_customer_scope(session: Session, principal: Principal, team_id: str) -> None:
    """403 unless ``team_id`` is a team of the manager's customer."""
    if principal.scope_type != "customer" or not owner_in_scope(session, principal, (team_id, None)):
        raise forbidden(principal, f"team {team_id!r} is not one of your customer's teams")


def team_readable(session: Session, principal: Principal, team_id: str) -> None:
    if principal.scope_type == "team" and team_id == principal.scope_id:
        return
    team_of_customer_scope(session, principal, team_id)


def customer_readable(principal: Principal, customer_id: str) -> None:
    if principal.scope_type != "customer" or customer_id != principal.scope_id:
        raise forbidden(principal, f"customer {customer_id!r} is not your scope")


def keep_owner(principal: Principal, stated: set[str], body: Any, current: Owner, fields: Iterable[str]) -> None:
    """403 when an update would move the entity to another owner."""
    for field, value in zip(("team_id", "customer_id"), current):
        if field in fields and field in stated and getattr(body, field) != value:
            raise forbidden(principal, f"{field}: a manager cannot move it to another owner (ask an admin)")


# -- caps -------------------------------------------------------------------------------------

_CAPPED = (("budget", "max_limit"), ("rate_limit", "token_max_limit"), ("rate_limit", "request_max_limit"),
           ("concurrency", "max_in_flight"))


def _owner_rows(session: Session, owner: Owner) -> list[Any]:
    """The entity ``owner`` names and its customer: the rows whose limits cap it."""
    team_id, customer_id = owner
    rows: list[Any] = []
    if team_id is not None:
        team = session.scalars(select(Team).where(Team.id == team_id).options(
            selectinload(Team.budget), selectinload(Team.rate_limit), selectinload(Team.concurrency))).one_or_none()
        if team is not None:
            rows.append(team)
            customer_id = team.customer_id
    if customer_id is not None:
        customer = session.scalars(select(Customer).where(Customer.id == customer_id).options(
            selectinload(Customer.budget), selectinload(Customer.rate_limit),
            selectinload(Customer.concurrency))).one_or_none()
        if customer is not None:
            rows.append(customer)
    return rows


def check_caps(session: Session, principal: Principal, owner: Owner, limits: Iterable[tuple[str, Any]]) -> None:
    """403 when a limit in ``limits`` ((field path, body part with budget/rate_limit/
    concurrency)) exceeds the same limit of ``owner`` or its customer."""
    caps = _owner_rows(session, owner)
    for where, part in limits:
        for section, amount in _CAPPED:
            wanted = getattr(getattr(part, section, None), amount, None)
            if wanted is None:
                continue
            for row in caps:
                limit = getattr(row, section)
                cap = getattr(limit, amount, None) if limit is not None else None
                if cap is not None and Decimal(str(wanted)) > Decimal(str(cap)):
                    kind = "team" if isinstance(row, Team) else "customer"
                    raise forbidden(principal, f"{where}{section}.{amount} {wanted} is above the cap an admin set "
                                               f"({kind} {row.id!r}: {cap})")


def body_limits(body: Any) -> list[tuple[str, Any]]:
    """The parts of a key or team body that carry limits: itself and its provider configs."""
    parts: list[tuple[str, Any]] = [("", body)]
    for index, config in enumerate(getattr(body, "provider_configs", None) or []):
        parts.append((f"provider_configs[{index}].", config))
    return parts
