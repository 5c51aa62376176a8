"""Provider-level and model-level limits (SPEC §1): every provider's budget and rate
limit, and the model configs (a model on one provider, or on any)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tollway.ui import present
from tollway.ui.client import ApiProblem
from tollway.ui.forms import Form, FormError
from tollway.ui.pages.entity import Body, EntityPages, Kind, limits_body
from tollway.ui.pages.keys import month_start
from tollway.ui.pages.limit_rules import rules_with_meters
from tollway.ui.web import LIST_LIMIT, Ui

PROVIDERS = Kind("provider", "/api/providers", "provider", "/ui/providers")
MODELS = Kind("model config", "/api/governance/model-configs", "model_config", "/ui/models")
SPEND = "/api/usage/spend"


def model_body(form: Form) -> Body:
    return {"model_name": form.get("model_name"), "provider": form.get("provider") or None}


class LimitPages:
    """The overview of provider and model limits, and creating a model config."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        self.providers = ProviderPages(ui)
        self.models = ModelPages(ui)

    def routes(self) -> list[BaseRoute]:
        return [Route("/ui/limits", self.list, methods=["GET"]),
                Route("/ui/providers", self.to_list, methods=["GET"]),
                Route("/ui/models", self.to_list, methods=["GET"]),
                Route("/ui/models", self.create_model, methods=["POST"]),
                *self.providers.routes(), *self.models.routes()]

    async def to_list(self, request: Request) -> Response:
        return RedirectResponse("/ui/limits", status_code=303)

    async def list(self, request: Request, status: int = 200, **extra: Any) -> Response:
        providers, models, rules = await asyncio.gather(
            self.ui.providers(), self.ui.api.get(MODELS.api, {"limit": LIST_LIMIT}), rules_with_meters(self.ui))
        now_ms = self.ui.now_ms()
        return self.ui.page(
            request, "limits.html", status, title="Provider and model limits",
            providers=[(p, present.meters(p, now_ms)) for p in providers],
            models=[(m, present.meters(m, now_ms)) for m in models["model_configs"]],
            provider_names=[p["name"] for p in providers], rules=rules, **extra)

    async def create_model(self, request: Request) -> Response:
        form = await self.ui.form(request)
        try:
            body = model_body(form) | {k: v for k, v in limits_body(form).items() if v is not None}
            answer = await self.ui.api.post(MODELS.api, body)
        except FormError as error:
            problem = error.problem
        except ApiProblem as problem_:
            problem = problem_
        else:
            config = answer["model_config"]
            return self.ui.redirect(MODELS.url(config["id"]), "Model config created.")
        return await self.list(request, problem.status, problem=problem, section="create",
                               action="create the model config", values=form.values())


class ProviderPages(EntityPages):
    """A provider's limits; its other settings come from the config file (read-only here)."""

    kind = PROVIDERS

    def routes(self) -> list[BaseRoute]:
        return [route for route in self.entity_routes() if not getattr(route, "path", "").endswith("/delete")]

    async def detail(self, request: Request, ident: str, status: int = 200, **extra: Any) -> Response:
        provider, month = await asyncio.gather(
            self.ui.api.get(PROVIDERS.api_url(ident)),
            self.ui.api.get(SPEND, {"provider": ident, "start": month_start(self.ui.now_ms())}))
        entity = provider["provider"]
        return self.ui.page(request, "provider.html", status, title=f"Provider {ident}", provider=entity,
                            meters=present.meters(entity, self.ui.now_ms()), month=month["total"], **extra)


class ModelPages(EntityPages):
    kind = MODELS

    def routes(self) -> list[BaseRoute]:
        return [*self.entity_routes(), Route("/ui/models/{ident}/details", self.update_details, methods=["POST"])]

    async def detail(self, request: Request, ident: str, status: int = 200, **extra: Any) -> Response:
        config = (await self.ui.api.get(MODELS.api_url(ident)))["model_config"]
        params = {"model": config["model_name"], "provider": config["provider"],
                  "start": month_start(self.ui.now_ms())}
        month, providers = await asyncio.gather(self.ui.api.get(SPEND, params), self.ui.providers())
        return self.ui.page(request, "model.html", status, title=f"Model {config['model_name']}", config=config,
                            meters=present.meters(config, self.ui.now_ms()), month=month["total"],
                            provider_names=[p["name"] for p in providers], **extra)

    async def update_details(self, request: Request) -> Response:
        ident = request.path_params["ident"]

        async def send(body: Body) -> Any:
            return await self.ui.api.put(MODELS.api_url(ident), body)

        return await self.apply(request, "details", "save the model config", model_body, send,
                                "Model config saved.")
