"""Teams and customers: lists with their spend this month, create, and detail pages
with their keys (and a customer's teams), rolled-up spend, limits and delete."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.ui import present
from tollway.ui.client import ApiProblem
from tollway.ui.forms import Form, FormError
from tollway.ui.pages.entity import Body, EntityPages, Kind, limits_body
from tollway.ui.pages.keys import KEYS, month_start
from tollway.ui.web import LIST_LIMIT, spend_by

TEAMS = Kind("team", "/api/governance/teams", "team", "/ui/teams", cascades="its virtual keys")
CUSTOMERS = Kind("customer", "/api/governance/customers", "customer", "/ui/customers",
                 cascades="its teams, their virtual keys and its own virtual keys")
SPEND = "/api/usage/spend"


def _create_body(form: Form, with_customer: bool) -> Body:
    body: Body = {"name": form.get("name")}
    if form.get("id"):
        body["id"] = form.get("id")
    if with_customer and form.get("customer_id"):
        body["customer_id"] = form.get("customer_id")
    return body | {name: value for name, value in limits_body(form).items() if value is not None}


class _OwnerPages(EntityPages):
    """The list, create and detail pages of teams or customers."""

    plural: str
    template: str  # the list page
    detail_template: str  # lays itself out on owner.html
    with_customer: bool

    def routes(self) -> list[BaseRoute]:
        base = self.kind.ui
        return [Route(base, self.list, methods=["GET"]), Route(base, self.create, methods=["POST"]),
                *self.entity_routes(), Route(base + "/{ident}/details", self.update_details, methods=["POST"])]

    async def list(self, request: Request, status: int = 200, **extra: Any) -> Response:
        search = request.query_params.get("search", "")
        customer_id = request.query_params.get("customer_id", "") if self.with_customer else ""
        group = "team" if self.with_customer else "customer"
        api = self.ui.api
        answer, spend, customers = await asyncio.gather(
            api.get(self.kind.api, {"search": search, "customer_id": customer_id, "limit": LIST_LIMIT}),
            # A manager reads spend of its scope only: its list shows no spend column figures.
            self.ui.optional(api.get(SPEND, {"group_by": group, "start": month_start(self.ui.now_ms())}),
                             {"series": [], "total": 0}),
            api.get(CUSTOMERS.api, {"limit": LIST_LIMIT}) if self.with_customer else _none())
        rows = _with_meters(answer[self.plural], self.ui.now_ms())
        customer_list = customers["customers"] if customers else []
        return self.ui.page(request, self.template, status, title=self.plural.capitalize(), rows=rows,
                            count=answer["count"], spend=spend_by(spend), search=search, customer_id=customer_id,
                            customers=customer_list, customer_names={c["id"]: c["name"] for c in customer_list},
                            **extra)

    async def create(self, request: Request) -> Response:
        form = await self.ui.form(request)
        try:
            answer = await self.ui.api.post(self.kind.api, _create_body(form, self.with_customer))
        except FormError as error:
            problem = error.problem
        except ApiProblem as problem_:
            problem = problem_
        else:
            entity = answer[self.kind.envelope]
            return self.ui.redirect(self.kind.url(entity["id"]), f"{self.kind.noun.capitalize()} created.")
        return await self.list(request, problem.status, problem=problem, section="create",
                               action=f"create the {self.kind.noun}", values=form.values())

    async def update_details(self, request: Request) -> Response:
        ident = request.path_params["ident"]

        def build(form: Form) -> Body:
            body: Body = {"name": form.get("name")}
            if self.with_customer:
                body["customer_id"] = form.get("customer_id") or None
            return body

        async def send(body: Body) -> Any:
            return await self.ui.api.put(self.kind.api_url(ident), body)

        return await self.apply(request, "details", f"save the {self.kind.noun}", build, send,
                                f"{self.kind.noun.capitalize()} saved.")

    async def detail(self, request: Request, ident: str, status: int = 200, **extra: Any) -> Response:
        now_ms = self.ui.now_ms()
        owner = (await self.ui.api.get(self.kind.api_url(ident)))[self.kind.envelope]
        parts = await self.detail_parts(ident, owner, month_start(now_ms), now_ms)
        return self.ui.page(request, self.detail_template, status, title=owner["name"], owner=owner,
                            meters=present.meters(owner, now_ms), **parts, **extra)

    async def detail_parts(self, ident: str, owner: Body, month: str, now_ms: int) -> dict[str, Any]:
        """What only this kind's detail page shows (its keys, and spend since ``month``)."""
        raise NotImplementedError


async def _none() -> None:
    return None


def _with_meters(entities: list[Body], now_ms: int) -> list[tuple[Body, list[present.Meter]]]:
    """Table rows: each entity with the meters of its budget and rate limit."""
    return [(entity, present.meters(entity, now_ms)) for entity in entities]


class TeamPages(_OwnerPages):
    kind = TEAMS
    plural = "teams"
    template = "teams.html"
    detail_template = "team.html"
    with_customer = True

    async def detail_parts(self, ident: str, owner: Body, month: str, now_ms: int) -> dict[str, Any]:
        api = self.ui.api
        keys, by_key, customers = await asyncio.gather(
            api.get(KEYS.api, {"team_id": ident, "limit": LIST_LIMIT}),
            api.get(SPEND, {"team_id": ident, "group_by": "key", "start": month}),
            api.get(CUSTOMERS.api, {"limit": LIST_LIMIT}))
        customer_names = {c["id"]: c["name"] for c in customers["customers"]}
        return {"keys": _with_meters(keys["virtual_keys"], now_ms), "key_count": keys["count"],
                "key_spend": spend_by(by_key), "month": by_key["total"], "customers": customers["customers"],
                "customer_name": customer_names.get(owner["customer_id"] or "")}


class CustomerPages(_OwnerPages):
    kind = CUSTOMERS
    plural = "customers"
    template = "customers.html"
    detail_template = "customer.html"
    with_customer = False

    async def detail_parts(self, ident: str, owner: Body, month: str, now_ms: int) -> dict[str, Any]:
        api = self.ui.api
        teams, keys, by_team, by_key = await asyncio.gather(
            api.get(TEAMS.api, {"customer_id": ident, "limit": LIST_LIMIT}),
            api.get(KEYS.api, {"customer_id": ident, "limit": LIST_LIMIT}),
            api.get(SPEND, {"customer_id": ident, "group_by": "team", "start": month}),
            api.get(SPEND, {"customer_id": ident, "group_by": "key", "start": month}))
        return {"teams": _with_meters(teams["teams"], now_ms), "keys": _with_meters(keys["virtual_keys"], now_ms),
                "team_spend": spend_by(by_team), "key_spend": spend_by(by_key), "month": by_team["total"]}
