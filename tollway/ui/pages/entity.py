"""What every governed entity's pages share: changing its budget and rate limit,
resetting their usage, deleting it after a confirmation, and showing an API error in
the form that caused it (with the values the person typed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.ui import forms
from tollway.ui.client import ApiProblem, path
from tollway.ui.forms import Form, FormError
from tollway.ui.web import Ui

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Kind:
    """How one kind of entity is named and addressed."""

    noun: str  # "virtual key"
    api: str  # its management API collection
    envelope: str  # the key of one entity in the API's answers
    ui: str  # its UI collection
    cascades: str = ""  # what a cascading delete also removes; "" when it cannot cascade

    def url(self, ident: str) -> str:
        return path(self.ui, ident)

    def api_url(self, ident: str, *rest: str) -> str:
        return path(self.api, ident, *rest)


def limits_body(form: Form) -> Body:
    """The budget, rate limit and concurrency limit of a limits form (any may be null: removed)."""
    return {"budget": forms.budget(form), "rate_limit": forms.rate_limit(form),
            "concurrency": forms.concurrency(form)}


class EntityPages:
    """Base of the pages of one kind; subclasses render the detail page."""

    kind: Kind

    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    async def detail(self, request: Request, ident: str, status: int = 200, **extra: Any) -> Response:
        raise NotImplementedError

    def entity_routes(self) -> list[BaseRoute]:
        base = self.kind.ui
        return [Route(base + "/{ident}", self.show, methods=["GET"]),
                Route(base + "/{ident}/limits", self.update_limits, methods=["POST"]),
                Route(base + "/{ident}/reset", self.reset, methods=["POST"]),
                Route(base + "/{ident}/delete", self.confirm_delete, methods=["GET"]),
                Route(base + "/{ident}/delete", self.delete, methods=["POST"])]

    async def show(self, request: Request) -> Response:
        return await self.detail(request, request.path_params["ident"])

    async def apply(self, request: Request, section: str, action: str, build: Callable[[Form], Body],
                    send: Callable[[Body], Awaitable[Any]], done: str) -> Response:
        """Build a body from the posted form and send it; on success go back to the detail
        page with ``done``, on failure show the same page with the error in ``section``."""
        ident = request.path_params["ident"]
        form = await self.ui.form(request)
        try:
            await send(build(form))
        except FormError as error:
            return await self.failed(request, ident, error.problem, section, action, form)
        except ApiProblem as problem:
            if problem.status == 404:
                raise
            return await self.failed(request, ident, problem, section, action, form)
        return self.ui.redirect(self.kind.url(ident), done)

    async def failed(self, request: Request, ident: str, problem: ApiProblem, section: str, action: str,
                     form: Form) -> Response:
        return await self.detail(request, ident, status=problem.status, problem=problem, section=section,
                                 action=action, values=form.values())

    async def update_limits(self, request: Request) -> Response:
        ident = request.path_params["ident"]

        async def send(body: Body) -> Any:
            return await self.ui.api.put(self.kind.api_url(ident), body)

        return await self.apply(request, "limits", "save the limits", limits_body, send, "Limits saved.")

    async def reset(self, request: Request) -> Response:
        """Reset the usage of the budget or rate limit (of the entity, or of a key's provider config)."""
        ident = request.path_params["ident"]
        form = await self.ui.form(request)
        which = "budget" if form.get("which") == "budget" else "rate-limit"
        provider = form.get("provider")
        route = (self.kind.api_url(ident, "provider-configs", provider, which, "reset") if provider
                 else self.kind.api_url(ident, which, "reset"))
        try:
            await self.ui.api.post(route)
        except ApiProblem as problem:
            return self.ui.redirect(self.kind.url(ident), f"Could not reset the usage: {problem.message}", "error")
        label = "Budget" if which == "budget" else "Rate-limit"
        return self.ui.redirect(self.kind.url(ident), f"{label} usage reset{' for ' + provider if provider else ''}.")

    async def confirm_delete(self, request: Request) -> Response:
        ident = request.path_params["ident"]
        entity = (await self.ui.api.get(self.kind.api_url(ident)))[self.kind.envelope]
        return self.ui.page(request, "confirm_delete.html", title=f"Delete {self.kind.noun}", kind=self.kind,
                            entity=entity, ident=ident)

    async def delete(self, request: Request) -> Response:
        ident = request.path_params["ident"]
        form = await self.ui.form(request)
        cascade = bool(self.kind.cascades) and form.checked("cascade")
        try:
            answer = await self.ui.api.delete(self.kind.api_url(ident), {"cascade": True} if cascade else None)
        except ApiProblem as problem:
            if problem.status == 404:
                raise
            entity = (await self.ui.api.get(self.kind.api_url(ident)))[self.kind.envelope]
            return self.ui.page(request, "confirm_delete.html", problem.status, title=f"Delete {self.kind.noun}",
                                kind=self.kind, entity=entity, ident=ident, problem=problem, action="delete it")
        return self.ui.redirect(self.kind.ui, answer.get("message", f"{self.kind.noun} deleted").capitalize() + ".")
