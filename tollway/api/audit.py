"""`/api/audit`: who changed what and when, newest first. Every create, update, delete
and usage reset made through this API is recorded (actor ``admin``, with the id and name of the admin
token that made it: ``token_id``, ``token_name``), as are the changes the config file
makes at start (actor ``config-file``, no token)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.api.context import PageDep, RuntimeDep, paginate, read
from tollway.api.limits import iso
from tollway.api.logs import utc
from tollway.api.responses import AuditList
from tollway.store.tables import AuditEntry

router = APIRouter(prefix="/api", tags=["audit"])


def audit_view(row: AuditEntry) -> dict[str, Any]:
    return {"id": row.id, "at": iso(row.at), "actor": row.actor,
            "token_id": row.token_id, "token_name": row.token_name, "action": row.action,
            "entity_type": row.entity_type, "entity_id": row.entity_id, "before": row.before, "after": row.after}


@router.get("/audit", response_model=AuditList, summary="The audit log, newest first")
async def audit(
    runtime: RuntimeDep, page: PageDep,
    entity_type: Annotated[str | None, Query(description="virtual_key, team, customer, model_config, provider, "
                                                         "provider_config.")] = None,
    entity_id: str | None = None,
    action: Annotated[str | None, Query(description="create, update, delete or reset.")] = None,
    actor: str | None = None,
    token_id: Annotated[str | None, Query(description="The admin token that made the change ('bootstrap': the "
                                                       "config's admin token).")] = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    def query(session: Session) -> tuple[int, list[dict[str, Any]]]:
        statement = select(AuditEntry)
        for column, value in ((AuditEntry.entity_type, entity_type), (AuditEntry.entity_id, entity_id),
                              (AuditEntry.action, action), (AuditEntry.actor, actor),
                              (AuditEntry.token_id, token_id)):
            if value is not None:
                statement = statement.where(column == value)
        if start is not None:
            statement = statement.where(AuditEntry.at >= utc(start))
        if end is not None:
            statement = statement.where(AuditEntry.at < utc(end))
        total, rows = paginate(session, statement, page, (AuditEntry.at.desc(), AuditEntry.id.desc()))
        return total, [audit_view(row) for row in rows]

    total, entries = await read(runtime, query)
    return {"entries": entries, "count": total, "limit": page.limit, "offset": page.offset}
