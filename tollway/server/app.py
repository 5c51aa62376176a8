"""The ASGI application: a dict of hot-path routes, the management API under /api, the
admin UI under /ui, and the lifespan that starts and stops the runtime."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from tollway.asgi import JSON_HEADERS, ClientGone, Receive, Scope, Send, header, read_body, replay, respond, respond_error
from tollway.config import Settings
from tollway.errors import GatewayError
from tollway.providers.client import Api
from tollway.providers.media import MEDIA_PATHS
from tollway.proxy import bedrock_route
from tollway.proxy.batch_routes import PATTERN_ROUTES as BATCH_PATTERN_ROUTES
from tollway.proxy.batch_routes import PREFIXES as BATCH_PREFIXES
from tollway.proxy.batch_routes import ROUTES as BATCH_ROUTES
from tollway.proxy.google_route import PREFIXES as GOOGLE_PREFIXES
from tollway.proxy.google_route import route_fields
from tollway.proxy.responses_route import PREFIX as RESPONSES_PREFIX
from tollway.server.key_info_route import PATH as KEY_INFO_PATH
from tollway.server.models_route import ModelsRoute
from tollway.server.runtime import Runtime
from tollway.server.services import Services

log = logging.getLogger(__name__)
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
# Routes matched by prefix, with an id in the path, beside the table's.
PATTERN_ROUTES = ("GET /v1/models/{id}", "GET /v1/responses/{id}", "DELETE /v1/responses/{id}",
                  "POST /v1/responses/{id}/cancel", "GET /v1/responses/{id}/input_items",
                  "POST /v1beta/models/{model}:generateContent", "POST /v1beta/models/{model}:streamGenerateContent",
                  "POST /v1/models/{model}:generateContent", "POST /v1/models/{model}:streamGenerateContent",
                  "POST /model/{modelId}/converse", "POST /model/{modelId}/converse-stream",
                  *BATCH_PATTERN_ROUTES)


class Gateway:
    """The ASGI callable that uvicorn serves. Build with `create_app`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self._proxy(Api.CHAT),
            ("POST", "/chat/completions"): self._proxy(Api.CHAT),
            ("POST", "/v1/completions"): self._proxy(Api.COMPLETIONS),
            ("POST", "/v1/embeddings"): self._proxy(Api.EMBEDDINGS),
            ("POST", "/v1/messages"): self._proxy(Api.MESSAGES),
            ("POST", "/v1/messages/count_tokens"): self._proxy(Api.COUNT_TOKENS),
            ("POST", "/v1/responses"): self._responses,
            ("POST", "/v1/responses/input_tokens"): self._proxy(Api.RESPONSES_INPUT_TOKENS),
            **{("POST", "/v1" + path): self._media(api) for api, path in MEDIA_PATHS.items()},
            **{route: self._batches(route) for route in BATCH_ROUTES},
            ("GET", "/v1/models"): self._models,
            ("GET", "/models"): self._models,
            ("GET", KEY_INFO_PATH): self._key_info,
            ("GET", "/health"): self._health,
            ("GET", "/metrics"): self._metrics,
        }

    def served_routes(self) -> list[str]:
        """Every route this gateway answers, as ``METHOD /path`` (``{id}`` for a path
        segment, a final ``*`` for a prefix): the table's, the prefix-matched ones, and
        those of the management API and the UI when they are mounted."""
        routes = [f"{method} {path}" for method, path in self._routes] + list(PATTERN_ROUTES)
        for app in (self.runtime.management, self.runtime.ui and self.runtime.ui.app):
            routes += _mounted_routes(getattr(app, "routes", ()))
        return routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            handler = self._routes.get((scope["method"], path))
            if handler is not None:
                await handler(scope, receive, send)
            elif scope["method"] == "GET" and ModelsRoute.matches(path):
                await self.runtime.models.retrieve(scope, send)
            elif scope["method"] == "POST" and path.startswith(GOOGLE_PREFIXES):
                await self._google(scope, receive, send)
            elif scope["method"] == "POST" and path.startswith(bedrock_route.PREFIX):
                await self._bedrock(scope, receive, send)
            elif path.startswith(RESPONSES_PREFIX):
                await self.runtime.responses.stored(scope, receive, send)
            elif path.startswith(BATCH_PREFIXES):
                await self.runtime.batches.by_id(scope, receive, send)
            elif path.startswith("/api") and self.runtime.management is not None:
                await self._management(scope, receive, send)
            elif (path == "/ui" or path.startswith("/ui/")) and self.runtime.ui is not None:
                await self.runtime.ui(scope, receive, send)
            else:
                await self._no_route(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def _proxy(self, api: Api) -> Handler:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            await self.runtime.proxy.handle(api, scope, receive, send)

        return handle

    async def _google(self, scope: Scope, receive: Receive, send: Send) -> None:
        fields = route_fields(scope["path"])
        if fields is None:
            await self._no_route(scope, send)
            return
        await self.runtime.proxy.handle(Api.GENERATE_CONTENT, scope, receive, send, fields)

    async def _bedrock(self, scope: Scope, receive: Receive, send: Send) -> None:
        fields = bedrock_route.route_fields(scope)
        if fields is None:
            await self._no_route(scope, send)
            return
        await self.runtime.proxy.handle(Api.CONVERSE, scope, receive, send, fields)

    def _media(self, api: Api) -> Handler:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            await self.runtime.media.handle(api, scope, receive, send)

        return handle

    def _batches(self, route: tuple[str, str]) -> Handler:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            await self.runtime.batches.handle(route, scope, receive, send)

        return handle

    async def _responses(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.runtime.responses.create(scope, receive, send)

    async def _management(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The management API, with its body read first within ``max_body_bytes``: FastAPI
        would read a body of any size (before even checking the admin token)."""
        try:
            body = await read_body(scope, receive, self.runtime.settings.max_body_bytes)
        except GatewayError as err:
            error = {"type": "payload_too_large" if err.status == 413 else "bad_request", "message": err.message,
                     "field": None}
            await respond(send, err.status, orjson.dumps({"error": error}), JSON_HEADERS + err.headers)
            return
        except ClientGone:
            return
        await self.runtime.management(scope, replay(body, receive), send)

    async def _key_info(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.runtime.key_info.handle(scope, send)

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.runtime.models.list(scope, send)

    async def _no_route(self, scope: Scope, send: Send) -> None:
        """404 (405 for a known path and another method) that lists what the gateway serves,
        in the error shape of the client's API."""
        method, path = scope["method"], scope["path"]
        allowed = sorted(m for m, p in self._routes if p == path)
        served = ", ".join([f"{m} {p}" for m, p in self._routes if p.startswith("/v1/")] + list(PATTERN_ROUTES))
        if allowed:
            error = GatewayError(405, "invalid_request_error", f"{path} does not accept {method}; it accepts "
                                 f"{', '.join(allowed)}", code="method_not_allowed",
                                 headers=[(b"allow", ", ".join(allowed).encode())])
        else:
            error = GatewayError(404, "not_found_error", f"this gateway has no route {method} {path}; it serves {served}",
                                 code="not_found")
        await respond_error(send, error, anthropic=header(scope, b"anthropic-version") is not None)

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = await self.runtime.health()
        await respond(send, 200, orjson.dumps(status))

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.runtime.metrics
        await respond(send, 200, metrics.render(), [(b"content-type", metrics.content_type.encode())])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _mounted_routes(routes: Any) -> list[str]:
    """``METHOD /path`` of a Starlette or FastAPI app's routes: included routers
    flattened, a mount (static files) as its prefix with ``/*``."""
    found: list[str] = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)  # FastAPI >= 0.165: an included router
        if contexts is not None:
            found += [f"{method} {context.path}" for context in contexts()
                      for method in sorted(context.original_route.methods or ()) if method != "HEAD"]
        elif getattr(route, "methods", None):
            found += [f"{method} {route.path}" for method in sorted(route.methods) if method != "HEAD"]
        elif getattr(route, "path", None) is not None:
            found.append(f"GET {route.path}/*")
    return found


def create_app(settings: Settings, services: Services | None = None, *, prepare_database: bool = True) -> Gateway:
    """The gateway for ``settings``, with ``services`` (clock, counter store, database)
    where a caller brings its own; ``prepare_database`` runs migrations and loads the
    config file's governance section at startup (the CLI does it once before workers)."""
    return Gateway(Runtime(settings, services, prepare_database=prepare_database))


__all__ = ["JSON_HEADERS", "Gateway", "Services", "create_app"]
