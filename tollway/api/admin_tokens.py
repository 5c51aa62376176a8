"""`/api/admin-tokens`: scoped tokens for the management API, made and revoked by an admin.

A token's value (``twa-…``) is returned once, by the create call; the store keeps only its
sha256 and a short prefix, as for virtual keys. Revoked tokens stay listed (the audit log
names them) and answer 401 from then on. Who may call what is `tollway.api.permissions`.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.api.context import ApiWriter, PageDep, RuntimeDep, change, paginate, read
from tollway.api.errors import ApiError, invalid, not_found
from tollway.api.limits import iso
from tollway.api.owners import check_customer, check_team
from tollway.api.principal import MANAGER, TOKEN_PREFIX, Principal, current_principal, hash_token
from tollway.api.responses import Message
from tollway.store.tables import AdminToken, new_id

router = APIRouter(prefix="/api/admin-tokens", tags=["admin tokens"])
KIND = "admin_token"
VALUE_PREFIX_LENGTH = 12  # "twa-" and 8 characters: enough to tell tokens apart in a list
Role = Literal["admin", "manager", "viewer", "usage_reader"]
_Id = Annotated[str, Field(min_length=1, max_length=256)]


class TokenScope(BaseModel):
    """What a manager manages: one team or one customer."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    team_id: _Id | None = None
    customer_id: _Id | None = None

    @model_validator(mode="after")
    def _one_owner(self) -> TokenScope:
        if (self.team_id is None) == (self.customer_id is None):
            raise ValueError("give exactly one of team_id or customer_id")
        return self


class AdminTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: _Id
    role: Role
    scope: TokenScope | None = Field(None, description="Required for a manager, refused for the other roles.")


class TokenScopeView(BaseModel):
    type: Literal["team", "customer"]
    id: str


class AdminTokenView(BaseModel):
    id: str
    name: str
    role: str
    scope: TokenScopeView | None
    value_prefix: str | None
    created_at: str | None
    created_by: str | None
    last_used_at: str | None
    revoked_at: str | None
    value: str | None = Field(None, description="Only in the response that created the token.")


class AdminTokenEnvelope(Message):
    admin_token: AdminTokenView


class AdminTokenList(BaseModel):
    admin_tokens: list[AdminTokenView]
    count: int
    limit: int
    offset: int


def token_view(row: AdminToken, value: str | None = None) -> dict[str, Any]:
    scope = {"type": row.scope_type, "id": row.scope_id} if row.scope_type else None
    return {"id": row.id, "name": row.name, "role": row.role, "scope": scope, "value_prefix": row.value_prefix,
            "created_at": iso(row.created_at), "created_by": row.created_by, "last_used_at": iso(row.last_used_at),
            "revoked_at": iso(row.revoked_at), "value": value}


def principal_view(principal: Principal) -> dict[str, Any]:
    scope = {"type": principal.scope_type, "id": principal.scope_id} if principal.scope_type else None
    return {"id": principal.token_id, "name": principal.name, "role": principal.role, "scope": scope,
            "value_prefix": None, "created_at": None, "created_by": None, "last_used_at": None,
            "revoked_at": None, "value": None}


@router.get("", response_model=AdminTokenList, summary="List admin tokens (values are never shown)")
async def list_tokens(
    runtime: RuntimeDep, page: PageDep, role: Role | None = None,
    revoked: Annotated[bool | None, Query(description="true: only revoked tokens; false: only live ones.")] = None,
) -> dict[str, Any]:
    def query(session: Session) -> tuple[int, list[dict[str, Any]]]:
        statement = select(AdminToken)
        if role is not None:
            statement = statement.where(AdminToken.role == role)
        if revoked is not None:
            statement = statement.where(AdminToken.revoked_at.is_not(None) if revoked else AdminToken.revoked_at.is_(None))
        total, rows = paginate(session, statement, page, (AdminToken.created_at, AdminToken.id))
        return total, [token_view(row) for row in rows]

    total, views = await read(runtime, query)
    return {"admin_tokens": views, "count": total, "limit": page.limit, "offset": page.offset}


@router.post("", status_code=201, response_model=AdminTokenEnvelope, summary="Create an admin token")
async def create_token(body: AdminTokenCreate, runtime: RuntimeDep) -> dict[str, Any]:
    """The response carries the token's ``value``: the only time it is shown."""
    if body.role == MANAGER and body.scope is None:
        raise invalid("scope", "a manager needs a scope: {\"team_id\": …} or {\"customer_id\": …}")
    if body.role != MANAGER and body.scope is not None:
        raise invalid("scope", f"only a manager has a scope (role {body.role!r} reaches what its role allows)")
    value = TOKEN_PREFIX + secrets.token_urlsafe(32)
    creator = current_principal()

    def write(writer: ApiWriter) -> AdminToken:
        scope_type, scope_id = None, None
        if body.scope is not None:
            check_team(writer.session, body.scope.team_id, "scope.team_id")
            check_customer(writer.session, body.scope.customer_id, "scope.customer_id")
            scope_type, scope_id = ("team", body.scope.team_id) if body.scope.team_id else \
                ("customer", body.scope.customer_id)
        row = AdminToken(id="at-" + new_id(), name=body.name, role=body.role, scope_type=scope_type,
                         scope_id=scope_id, value_hash=hash_token(value), value_prefix=value[:VALUE_PREFIX_LENGTH],
                         created_at=writer.now, created_by=creator.token_id if creator else None)
        writer.session.add(row)
        writer.audit("create", KIND, row.id, None, token_view(row))
        return row

    view = await change(runtime, write, lambda row: token_view(row, value))
    return {"message": "admin token created; store its value now: it is not shown again", "admin_token": view}


@router.get("/self", response_model=AdminTokenEnvelope, summary="The token this request was made with")
async def token_self() -> dict[str, Any]:
    """Any token may ask who it is: its id, name, role and scope (the admin UI uses it)."""
    principal = current_principal()
    if principal is None:  # the permission dependency always sets it
        raise ApiError(401, "no admin token")
    return {"message": "this token", "admin_token": principal_view(principal)}


@router.get("/{token_id}", response_model=AdminTokenEnvelope, summary="Get an admin token")
async def get_token(token_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    def query(session: Session) -> dict[str, Any]:
        row = session.get(AdminToken, token_id)
        if row is None:
            raise not_found("admin token", token_id)
        return token_view(row)

    return {"message": "admin token found", "admin_token": await read(runtime, query)}


@router.delete("/{token_id}", response_model=AdminTokenEnvelope, summary="Revoke an admin token")
async def revoke_token(token_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """From now on the token answers 401; it stays listed, with ``revoked_at``."""
    def write(writer: ApiWriter) -> AdminToken:
        row = writer.session.get(AdminToken, token_id)
        if row is None:
            raise not_found("admin token", token_id)
        if row.revoked_at is not None:
            raise ApiError(409, f"admin token {token_id!r} was revoked already")
        row.revoked_at = writer.now
        writer.audit("revoke", KIND, token_id, {"revoked_at": None}, {"revoked_at": iso(writer.now)})
        return row

    view = await change(runtime, write, token_view)
    return {"message": f"admin token {token_id!r} revoked", "admin_token": view}
