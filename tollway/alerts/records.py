"""The alerts' rows in the config store: API webhooks, claimed crossings and the
delivery log. Every function takes the `Database` and runs one short transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tollway.alerts.config import AlertsConfig
from tollway.alerts.detect import Alert
from tollway.store.database import Database
from tollway.store.tables import AlertCrossing, AlertDelivery, AlertWebhook, new_id

CONFIG_PREFIX = "config-"  # ids of the config file's webhooks: config-0, config-1, …


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook as the dispatcher sees it (secret included: it signs)."""

    id: str
    url: str
    secret: str
    events: frozenset[str] | None
    format: str

    def wants(self, event: str) -> bool:
        return self.events is None or event in self.events


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery row written with its claim, to hand to the dispatcher."""

    id: str
    target: Target
    alert: Alert
    body: dict[str, Any]


def config_targets(config: AlertsConfig) -> list[Target]:
    return [Target(f"{CONFIG_PREFIX}{index}", hook.url, hook.secret,
                   frozenset(hook.events) if hook.events is not None else None, hook.format)
            for index, hook in enumerate(config.webhooks)]


async def api_targets(db: Database) -> list[Target]:
    """The webhooks added through the management API."""
    async with db.session() as session:
        rows = (await session.scalars(select(AlertWebhook).order_by(AlertWebhook.created_at))).all()
    return [Target(row.id, row.url, row.secret, frozenset(row.events) if row.events is not None else None, row.format)
            for row in rows]


async def claim(db: Database, alerts: Sequence[tuple[Alert, dict[str, Any] | None]], targets: Sequence[Target],
                now: datetime) -> list[NewDelivery]:
    """Insert a crossing row per alert; where this node's insert succeeded (no other node
    claimed that limit, window, event and threshold), also insert a pending delivery per
    interested target, in the same transaction. ``None`` bodies claim without delivering
    (a lower threshold passed over on the way to a higher one)."""
    insert = postgresql_insert if db.dialect == "postgresql" else sqlite_insert
    deliveries: list[NewDelivery] = []
    async with db.session() as session:
        for alert, body in alerts:
            statement = insert(AlertCrossing).values(
                counter=alert.check.counter, window_start_ms=alert.window_start_ms, event=alert.event,
                threshold=alert.threshold, at=now,
            ).on_conflict_do_nothing().returning(AlertCrossing.id)
            won = (await session.execute(statement)).scalar_one_or_none() is not None
            if not won or body is None:
                continue
            for target in targets:
                if target.wants(alert.event):
                    delivery = NewDelivery(new_id(), target, alert, body)
                    session.add(_delivery_row(delivery, now))
                    deliveries.append(delivery)
    return deliveries


def _delivery_row(delivery: NewDelivery, now: datetime) -> AlertDelivery:
    alert = delivery.alert
    return AlertDelivery(
        id=delivery.id, created_at=now, updated_at=now, event=alert.event, level=alert.check.scope.level.value,
        entity_id=alert.check.scope.id, counter=alert.check.counter, threshold=alert.threshold,
        webhook_id=delivery.target.id, target=delivery.target.url, status="pending", attempts=0,
        payload=delivery.body,
    )


async def record_attempt(db: Database, delivery_id: str, *, status: str, attempts: int, now: datetime,
                         error: str | None = None, response_status: int | None = None) -> None:
    """Note the outcome of an attempt (or of a delivery dropped before one)."""
    async with db.session() as session:
        await session.execute(update(AlertDelivery).where(AlertDelivery.id == delivery_id).values(
            status=status, attempts=attempts, updated_at=now, last_error=error, response_status=response_status))
