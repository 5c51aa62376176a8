"""Who is calling the management API: the bootstrap admin token from the config, or a
scoped admin token (`tollway.api.admin_tokens`) found by the sha256 of its value.

`authenticate` answers 401 for a missing, unknown or revoked token, 403 for a virtual key
and 503 when the API is off (no ``admin_token`` set). The principal it finds is kept for
the rest of the request in a context variable, so the audit log (`tollway.api.context`)
and the scoped list filters (`tollway.api.manager_scope`) see it without every route
passing it along.

The admin UI calls the API in-process with the bootstrap token and names the scoped
token its session logged in with in the ASGI scope (`ACTING_TOKEN_SCOPE_KEY`): a key no
HTTP client can set, honoured only together with the bootstrap token.
"""

from __future__ import annotations

import hashlib
import hmac
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tollway.api.errors import ApiError
from tollway.config.schema import VK_PREFIX
from tollway.store.database import Database
from tollway.store.tables import AdminToken

ADMIN, MANAGER, VIEWER, USAGE_READER = "admin", "manager", "viewer", "usage_reader"
ROLES = (ADMIN, MANAGER, VIEWER, USAGE_READER)
SCOPE_TYPES = ("team", "customer")
TOKEN_PREFIX = "twa-"
BOOTSTRAP_ID = "bootstrap"
ACTING_TOKEN_SCOPE_KEY = "tollway.acting_admin_token"
# last_used_at is written at most this often per token: a read must not become a write each time.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    """The token a request acts with: its id and name (never its value), role and scope."""

    token_id: str
    name: str
    role: str
    scope_type: str | None = None  # "team" or "customer" for a manager
    scope_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def describe(self) -> str:
        """How error messages name it: ``manager of team 'ml'``."""
        if self.role == MANAGER:
            return f"{self.role} of {self.scope_type} {self.scope_id!r}"
        return self.role


BOOTSTRAP = Principal(BOOTSTRAP_ID, "bootstrap admin token (config)", ADMIN)
_current: ContextVar[Principal | None] = ContextVar("tollway_admin_principal", default=None)


def current_principal() -> Principal | None:
    """The principal of the management API request running now (None outside one)."""
    return _current.get()


def hash_token(value: str) -> str:
    """The stored form of an admin token (sha256, as for virtual keys)."""
    return hashlib.sha256(value.encode()).hexdigest()


def principal_of(row: AdminToken) -> Principal:
    return Principal(row.id, row.name, row.role, row.scope_type, row.scope_id)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request, expected: str | None, db: Database, now: datetime) -> Principal:
    """The principal of ``request`` (and remember it for the request), or raise 401/403/503.
    ``expected`` is the bootstrap token, compared in constant time and nothing else."""
    if not expected:
        raise ApiError(503, "management API disabled: set admin_token")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("the management API needs 'Authorization: Bearer <admin_token>'")
    if hmac.compare_digest(token.encode(), expected.encode()):
        acting = request.scope.get(ACTING_TOKEN_SCOPE_KEY)
        principal = BOOTSTRAP if acting is None else await _scoped(db, now, token_id=acting)
    elif token.startswith(VK_PREFIX):
        raise ApiError(403, "virtual keys cannot use the management API: send the admin token")
    elif token.startswith(TOKEN_PREFIX):
        principal = await _scoped(db, now, value_hash=hash_token(token))
    else:
        raise _unauthorized("invalid admin token")
    _current.set(principal)
    return principal


async def _scoped(db: Database, now: datetime, *, value_hash: str | None = None,
                  token_id: str | None = None) -> Principal:
    """The live scoped token with this hash (or id); 401 when unknown or revoked."""
    column, wanted = (AdminToken.value_hash, value_hash) if value_hash is not None else (AdminToken.id, token_id)

    def find(session: Session) -> AdminToken | None:
        row = session.scalars(select(AdminToken).where(column == wanted)).one_or_none()
        if row is not None and row.revoked_at is None and (
                row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION):
            session.execute(update(AdminToken).where(AdminToken.id == row.id).values(last_used_at=now))
        return row

    async with db.session() as session:
        row = await session.run_sync(find)
    if row is None:
        raise _unauthorized("invalid admin token")
    if row.revoked_at is not None:
        raise _unauthorized(f"admin token {row.id!r} was revoked")
    return principal_of(row)
