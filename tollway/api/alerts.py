"""`/api/alerts`: the webhooks alerts go to, and the delivery log.

Webhooks come from the config file (``alerts.webhooks``, ids ``config-N``, read-only
here) and from this API. A webhook's secret signs every delivery; it is shown in the
response that creates the webhook and never again.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.alerts.config import EVENTS, Event, Format, Secret, check_events, check_webhook_url
from tollway.alerts.records import CONFIG_PREFIX
from tollway.api.context import ApiWriter, PageDep, RuntimeDep, change, paginate, read
from tollway.api.errors import ApiError, bad_request, not_found
from tollway.api.limits import iso
from tollway.api.responses import Message
from tollway.store.tables import AlertDelivery, AlertWebhook, new_id

router = APIRouter(prefix="/api/alerts", tags=["alerts"])
_KIND = "alert_webhook"
_STATUSES = ("pending", "retrying", "delivered", "failed", "dropped")


class WebhookCreate(BaseModel):
    """A receiver of alerts; without ``secret`` one is generated (and shown once)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    secret: Secret | None = Field(None, repr=False)
    events: list[Event] | None = None
    format: Format = "json"

    _url = field_validator("url")(check_webhook_url)
    _events = field_validator("events")(check_events)


class WebhookView(BaseModel):
    id: str
    name: str | None
    url: str
    events: list[str] | None
    format: str
    source: Literal["api", "config"]
    created_at: str | None
    secret: str | None = Field(None, description="Only in the response that created the webhook.")


class WebhookEnvelope(BaseModel):
    message: str
    webhook: WebhookView


class WebhookList(BaseModel):
    webhooks: list[WebhookView]
    count: int


class DeliveryView(BaseModel):
    id: str
    event: str
    level: str
    entity_id: str
    counter: str
    threshold: float
    webhook_id: str
    target: str
    status: str
    attempts: int
    response_status: int | None
    last_error: str | None
    created_at: str | None
    updated_at: str | None
    payload: dict[str, Any]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryView]
    count: int
    limit: int
    offset: int


def _webhook_view(row: AlertWebhook, secret: str | None = None) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "url": row.url, "events": row.events, "format": row.format,
            "source": "api", "created_at": iso(row.created_at), "secret": secret}


def _config_views(runtime: Any) -> list[dict[str, Any]]:
    return [{"id": f"{CONFIG_PREFIX}{index}", "name": None, "url": hook.url, "events": hook.events,
             "format": hook.format, "source": "config", "created_at": None, "secret": None}
            for index, hook in enumerate(runtime.settings.alerts.webhooks)]


@router.get("/webhooks", response_model=WebhookList, summary="List alert webhooks (secrets are never shown)")
async def list_webhooks(runtime: RuntimeDep) -> dict[str, Any]:
    def query(session: Session) -> list[dict[str, Any]]:
        rows = session.scalars(select(AlertWebhook).order_by(AlertWebhook.created_at, AlertWebhook.id)).all()
        return [_webhook_view(row) for row in rows]

    views = _config_views(runtime) + await read(runtime, query)
    return {"webhooks": views, "count": len(views)}


@router.post("/webhooks", status_code=201, response_model=WebhookEnvelope, summary="Add an alert webhook")
async def create_webhook(body: WebhookCreate, runtime: RuntimeDep) -> dict[str, Any]:
    """The response carries the ``secret`` that signs deliveries: the only time it is shown."""
    secret = body.secret or "whsec_" + secrets.token_urlsafe(32)

    def write(writer: ApiWriter) -> AlertWebhook:
        row = AlertWebhook(id=new_id(), name=body.name, url=body.url, secret=secret, events=body.events,
                           format=body.format, created_at=writer.now)
        writer.session.add(row)
        writer.audit("create", _KIND, row.id, None, _webhook_view(row) | {"secret": None})
        return row

    view = await change(runtime, write, lambda row: _webhook_view(row, secret))
    return {"message": "webhook created; store its secret now: it is not shown again", "webhook": view}


@router.get("/webhooks/{webhook_id}", response_model=WebhookEnvelope, summary="Get an alert webhook")
async def get_webhook(webhook_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    for view in _config_views(runtime):
        if view["id"] == webhook_id:
            return {"message": "webhook found", "webhook": view}

    def query(session: Session) -> dict[str, Any]:
        row = session.get(AlertWebhook, webhook_id)
        if row is None:
            raise not_found("webhook", webhook_id)
        return _webhook_view(row)

    return {"message": "webhook found", "webhook": await read(runtime, query)}


@router.delete("/webhooks/{webhook_id}", response_model=Message, summary="Delete an alert webhook")
async def delete_webhook(webhook_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """Deliveries already queued to it still go out; its delivery log stays."""
    if webhook_id.startswith(CONFIG_PREFIX) and any(v["id"] == webhook_id for v in _config_views(runtime)):
        raise ApiError(409, f"webhook {webhook_id!r} comes from the config file: remove it there")

    def write(writer: ApiWriter) -> None:
        row = writer.session.get(AlertWebhook, webhook_id)
        if row is None:
            raise not_found("webhook", webhook_id)
        writer.audit("delete", _KIND, webhook_id, _webhook_view(row) | {"secret": None}, None)
        writer.session.delete(row)

    await change(runtime, write, lambda _: None)
    return {"message": f"webhook {webhook_id!r} deleted"}


def _delivery_view(row: AlertDelivery) -> dict[str, Any]:
    return {"id": row.id, "event": row.event, "level": row.level, "entity_id": row.entity_id,
            "counter": row.counter, "threshold": row.threshold, "webhook_id": row.webhook_id, "target": row.target,
            "status": row.status, "attempts": row.attempts, "response_status": row.response_status,
            "last_error": row.last_error, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
            "payload": row.payload}


@router.get("/deliveries", response_model=DeliveryList, summary="The alert delivery log, newest first")
async def deliveries(
    runtime: RuntimeDep, page: PageDep,
    status: Annotated[str | None, Query(description=f"One of {', '.join(_STATUSES)}.")] = None,
    event: Annotated[str | None, Query(description=f"One of {', '.join(EVENTS)}.")] = None,
    webhook_id: str | None = None,
    entity_id: Annotated[str | None, Query(alias="id", description="The limited entity's id.")] = None,
) -> dict[str, Any]:
    if status is not None and status not in _STATUSES:
        raise bad_request(f"unknown status {status!r}: use one of {', '.join(_STATUSES)}", "status")
    if event is not None and event not in EVENTS:
        raise bad_request(f"unknown event {event!r}: use one of {', '.join(EVENTS)}", "event")

    def query(session: Session) -> tuple[int, list[dict[str, Any]]]:
        statement = select(AlertDelivery)
        for column, value in ((AlertDelivery.status, status), (AlertDelivery.event, event),
                              (AlertDelivery.webhook_id, webhook_id), (AlertDelivery.entity_id, entity_id)):
            if value is not None:
                statement = statement.where(column == value)
        total, rows = paginate(session, statement, page, (AlertDelivery.created_at.desc(), AlertDelivery.id))
        return total, [_delivery_view(row) for row in rows]

    total, views = await read(runtime, query)
    return {"deliveries": views, "count": total, "limit": page.limit, "offset": page.offset}
