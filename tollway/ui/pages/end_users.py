"""End users: the people requests named, ranked by spend (or requests, last request, id),
narrowed to a key, team or customer (each by id or name) and to ids starting with a
search; each links to their requests in the request log."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.ui import lookup
from tollway.ui.client import ApiProblem
from tollway.ui.web import Ui, with_query

PAGE_SIZE = 50
FILTERS = ("virtual_key_id", "team_id", "customer_id", "search", "sort")
SORTS = {"spend": "spend", "requests": "requests", "last_seen": "last request", "end_user": "id"}


class EndUserPages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[BaseRoute]:
        return [Route("/ui/end-users", self.list, methods=["GET"])]

    async def list(self, request: Request) -> Response:
        query = request.query_params
        filters = {name: query.get(name, "").strip() for name in FILTERS}
        filters["sort"] = filters["sort"] if filters["sort"] in SORTS else "spend"
        offset = int(query["offset"]) if query.get("offset", "").isdigit() else 0
        problem: ApiProblem | None = None
        answer: dict = {"end_users": [], "count": 0}
        try:
            asked = dict(filters)
            for field, kind in (("virtual_key_id", lookup.KEY), ("team_id", lookup.TEAM),
                                ("customer_id", lookup.CUSTOMER)):
                if asked[field]:
                    asked[field] = await lookup.resolve(self.ui.api, kind, asked[field], field)
            answer = await self.ui.api.get("/api/governance/end-users",
                                           {**asked, "limit": PAGE_SIZE, "offset": offset})
        except ApiProblem as error:  # an unknown key, team or customer (lookup.Unknown), a bad filter
            if error.status not in (400, 422):
                raise
            problem = error
        count = answer["count"]
        return self.ui.page(
            request, "end_users.html", 400 if problem else 200, title="End users", rows=answer["end_users"],
            count=count, offset=offset, page_size=PAGE_SIZE, filters=filters, sorts=SORTS, problem=problem,
            action="list end users", section="filters",
            prev_url=with_query("/ui/end-users", **filters, offset=max(0, offset - PAGE_SIZE)) if offset else None,
            next_url=(with_query("/ui/end-users", **filters, offset=offset + PAGE_SIZE)
                      if offset + PAGE_SIZE < count else None))
