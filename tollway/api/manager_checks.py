"""The manager checks the permission rules (`tollway.api.permissions`) name: each reads
the route's path parameters and its body (validated with the route's own model, so the
check and the route read the same values) and raises 403 when the change leaves the
manager's scope or its caps (`tollway.api.manager_scope`).

A body the model rejects is let through unchecked: the route itself answers 422 and
writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.api.manager_scope import (
    body_limits,
    check_caps,
    customer_readable,
    forbidden,
    keep_owner,
    key_owner,
    owner_in_scope,
    team_of_customer_scope,
    team_readable,
)
from tollway.api.principal import Principal
from tollway.api.schemas import TeamCreate, TeamUpdate, VirtualKeyCreate, VirtualKeyUpdate
from tollway.api.virtual_keys_bulk import VirtualKeyBulkCreate
from tollway.store.tables import Team


@dataclass(frozen=True, slots=True)
class Call:
    """What a check sees of the request."""

    principal: Principal
    path: Mapping[str, str]
    body: Any  # the parsed JSON body, or None
    query: Mapping[str, str]


Check = Callable[[Session, Call], None]


def _model(call: Call, model: type[BaseModel]) -> Any:
    if call.body is None:
        return None
    try:
        return model.model_validate(call.body)
    except ValidationError:
        return None


def _check_new_key(session: Session, principal: Principal, body: VirtualKeyCreate, where: str = "") -> None:
    owner = (body.team_id, body.customer_id)
    if not owner_in_scope(session, principal, owner):
        raise forbidden(principal, f"{where}team_id/customer_id: a manager creates keys in its own scope only "
                                   f"(team_id {body.team_id!r}, customer_id {body.customer_id!r})")
    check_caps(session, principal, owner, [(where + w, part) for w, part in body_limits(body)])


def key_path(session: Session, call: Call) -> None:
    key_owner(session, call.principal, call.path["key_id"])


def key_create(session: Session, call: Call) -> None:
    body = _model(call, VirtualKeyCreate)
    if body is not None:
        _check_new_key(session, call.principal, body)


def key_bulk_create(session: Session, call: Call) -> None:
    body = _model(call, VirtualKeyBulkCreate)
    if body is not None:
        for index, key in enumerate(body.virtual_keys):
            _check_new_key(session, call.principal, key, f"virtual_keys[{index}].")


def key_update(session: Session, call: Call) -> None:
    owner = key_owner(session, call.principal, call.path["key_id"])
    body = _model(call, VirtualKeyUpdate)
    if body is not None:
        keep_owner(call.principal, body.model_fields_set, body, owner, ("team_id", "customer_id"))
        check_caps(session, call.principal, owner, body_limits(body))


def team_read(session: Session, call: Call) -> None:
    team_readable(session, call.principal, call.path["team_id"])


def team_of_customer(session: Session, call: Call) -> None:
    team_of_customer_scope(session, call.principal, call.path["team_id"])


def team_create(session: Session, call: Call) -> None:
    principal = call.principal
    if principal.scope_type != "customer":
        raise forbidden(principal, "only an admin or a customer's manager creates teams")
    body = _model(call, TeamCreate)
    if body is None:
        return
    if body.customer_id != principal.scope_id:
        raise forbidden(principal, f"customer_id: a manager creates teams of its own customer only "
                                   f"({principal.scope_id!r})")
    check_caps(session, principal, (None, body.customer_id), body_limits(body))


def team_update(session: Session, call: Call) -> None:
    principal = call.principal
    team_id = call.path["team_id"]
    team_of_customer_scope(session, principal, team_id)
    body = _model(call, TeamUpdate)
    if body is None:
        return
    customer_id = session.scalar(select(Team.customer_id).where(Team.id == team_id))
    keep_owner(principal, body.model_fields_set, body, (None, customer_id), ("customer_id",))
    check_caps(session, principal, (None, customer_id), body_limits(body))


def customer_read(session: Session, call: Call) -> None:
    customer_readable(call.principal, call.path["customer_id"])


def usage_narrowed(session: Session, call: Call) -> None:
    """A spend report or request log query narrowed (``virtual_key_id``, ``team_id`` or
    ``customer_id``) to something in the scope: filters combine with AND, so one in-scope
    filter keeps every row inside."""
    principal = call.principal
    key_id, team_id, customer_id = (call.query.get(name) for name in ("virtual_key_id", "team_id", "customer_id"))
    if key_id is not None:
        key_owner(session, principal, key_id)
    elif team_id is not None:
        team_readable(session, principal, team_id)
    elif customer_id is not None:
        customer_readable(principal, customer_id)
    else:
        raise forbidden(principal, "a manager reads spend and logs of its scope only: filter by virtual_key_id, "
                                   "team_id or customer_id")
