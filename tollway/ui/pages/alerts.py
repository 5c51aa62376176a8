"""Alerts: the webhooks alerts go to (secrets never shown) and the delivery log, newest
first, filtered by status or event; each delivery says its attempts and last error."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.alerts.config import EVENTS
from tollway.ui.web import Ui, with_query

PAGE_SIZE = 50
STATUSES = ("pending", "retrying", "delivered", "failed", "dropped")


class AlertPages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[BaseRoute]:
        return [Route("/ui/alerts", self.list, methods=["GET"])]

    async def list(self, request: Request) -> Response:
        query = request.query_params
        status = query.get("status", "") if query.get("status") in STATUSES else ""
        event = query.get("event", "") if query.get("event") in EVENTS else ""
        offset = int(query["offset"]) if query.get("offset", "").isdigit() else 0
        filters = {"status": status, "event": event}
        chosen = {name: value for name, value in filters.items() if value}
        webhooks, answer = await asyncio.gather(
            self.ui.api.get("/api/alerts/webhooks"),
            self.ui.api.get("/api/alerts/deliveries", {**chosen, "limit": PAGE_SIZE, "offset": offset}))
        count = answer["count"]
        return self.ui.page(
            request, "alerts.html", title="Alerts", webhooks=webhooks["webhooks"], rows=answer["deliveries"],
            count=count, offset=offset, page_size=PAGE_SIZE, filters=filters, statuses=STATUSES, events=EVENTS,
            prev_url=with_query("/ui/alerts", **filters, offset=max(0, offset - PAGE_SIZE)) if offset else None,
            next_url=(with_query("/ui/alerts", **filters, offset=offset + PAGE_SIZE)
                      if offset + PAGE_SIZE < count else None))
