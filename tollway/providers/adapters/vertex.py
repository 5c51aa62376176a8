"""Google Cloud's Vertex AI: Gemini models and Anthropic's Claude models in one project.

Vertex serves the wire formats of the Gemini API and of Anthropic's Messages API at its
own URLs, authenticated with OAuth access tokens of a service account:

    {host}/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:generateContent
    {host}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict

so the Gemini and Anthropic translators and stream decoders serve it unchanged; this
adapter supplies the URL, the token (`vertex_auth`) and the body tweaks: a Claude body
names no `model` (it is in the URL) and says `anthropic_version: vertex-2023-10-16`, and
Vertex's `countTokens` takes the request's fields at the top level.

Which publisher a model belongs to: the provider's `publishers` map, else its name
(`claude-*` is Anthropic's, everything else Google's).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tollway.providers.adapters.base import ProviderAdapter, TokenSource
from tollway.providers.adapters.vertex_auth import AccessTokens, credentials_problem, project_of
from tollway.providers.apis import Api

if TYPE_CHECKING:
    from tollway.config.schema import ProviderSettings

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
ANTHROPIC, GOOGLE = "anthropic", "google"
PUBLISHERS = (GOOGLE, ANTHROPIC)
_GOOGLE_METHODS = {Api.GENERATE_CONTENT: "generateContent", Api.GEMINI_COUNT_TOKENS: "countTokens",
                   Api.EMBED_CONTENT: "embedContent", Api.VERTEX_PREDICT: "predict"}
_GOOGLE_APIS = frozenset(_GOOGLE_METHODS)
_ANTHROPIC_APIS = frozenset({Api.MESSAGES, Api.COUNT_TOKENS})
# Multi-region endpoints have hosts of their own; every other region is `{region}-aiplatform`.
_HOSTS = {"global": "https://aiplatform.googleapis.com", "us": "https://aiplatform.us.rep.googleapis.com",
          "eu": "https://aiplatform.eu.rep.googleapis.com"}
_REGION = re.compile(r"[a-z][a-z0-9-]*")  # it becomes part of a host name
_SAFE = "-._~@"  # a model's version (`claude-sonnet-4-5@20250929`) keeps its `@`


def publisher_of(settings: ProviderSettings, model: str) -> str:
    """``google`` or ``anthropic``: the configured `publishers` entry, else by name."""
    configured = settings.publishers.get(model)
    if configured is not None:
        return configured
    return ANTHROPIC if model.startswith("claude") else GOOGLE


def host_of(region: str) -> str:
    """The Vertex AI endpoint serving ``region`` (`global`, `us` and `eu` have their own)."""
    return _HOSTS.get(region, f"https://{region}-aiplatform.googleapis.com")


class VertexAdapter(ProviderAdapter):
    """`type: vertex`. Gemini models speak `generateContent` (chat is translated to it, like
    the Gemini API); Claude models speak Messages (chat is translated to it, like Anthropic)."""

    needs_key = False  # the service account's tokens authenticate, not keys
    # The catalog files Vertex's prices (Claude's too) under "google"; Anthropic's list
    # prices for a Claude model Google's table lacks.
    price_catalog_ids = (GOOGLE, ANTHROPIC, None)
    native_apis = _GOOGLE_APIS | _ANTHROPIC_APIS
    translation_api = Api.GENERATE_CONTENT
    models_path = None  # Vertex lists no project's models: the catalog shows the configured ones
    routes_by_model = True
    tweaks_body = True

    def base_url(self, settings: ProviderSettings) -> str:
        """Everything of a URL up to the publisher, computed once per provider."""
        region = settings.region or "global"
        host = (settings.base_url or host_of(region)).rstrip("/").removesuffix("/v1")
        return f"{host}/v1/projects/{quote(project_of(settings), safe='-._~')}/locations/{quote(region, safe='-')}"

    def check(self, settings: ProviderSettings) -> None:
        if settings.responses_api:
            raise ValueError("responses_api: a vertex provider does not serve the Responses API "
                             "(requests to /v1/responses are translated)")
        if settings.region is not None and not _REGION.fullmatch(settings.region):
            raise ValueError(f"region: {settings.region!r} is not a Google Cloud region (e.g. us-east5, global)")
        problem = credentials_problem(settings)
        if problem is not None:
            raise ValueError(problem)

    def speaks(self, settings: ProviderSettings, api: Api) -> bool:
        return api in self.native_apis

    def upstream_api(self, settings: ProviderSettings, api: Api, model: str = "") -> Api:
        if publisher_of(settings, model) == ANTHROPIC:
            return api if api in _ANTHROPIC_APIS else Api.MESSAGES
        if api is Api.EMBEDDINGS and "gemini" not in model:
            return Api.VERTEX_PREDICT  # text-embedding-* models embed through :predict
        return api if api in _GOOGLE_APIS else Api.GENERATE_CONTENT

    def url(self, base: str, settings: ProviderSettings, api: Api, model: str, stream: bool) -> str:
        if api is Api.COUNT_TOKENS:  # Claude's counter is a model of its own
            return f"{base}/publishers/anthropic/models/count-tokens:rawPredict"
        name = quote(model.removeprefix("models/"), safe=_SAFE)  # the client's: it cannot leave its segment
        if api is Api.MESSAGES:
            return f"{base}/publishers/anthropic/models/{name}:{'streamRawPredict' if stream else 'rawPredict'}"
        if stream and api is Api.GENERATE_CONTENT:
            return f"{base}/publishers/google/models/{name}:streamGenerateContent?alt=sse"
        return f"{base}/publishers/google/models/{name}:{_GOOGLE_METHODS[api]}"

    def tweak_body(self, settings: ProviderSettings, api: Api, model: str, body: dict[str, Any]) -> dict[str, Any]:
        if api is Api.MESSAGES:  # the model is in the URL; Vertex refuses it in the body
            body.pop("model", None)
            body["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        elif api is Api.COUNT_TOKENS:  # count-tokens is one URL for every model: the body names it
            body["model"] = model
            body["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        elif api is Api.GEMINI_COUNT_TOKENS:  # Vertex takes the request's fields at the top level
            request = body.pop("generateContentRequest", None)
            if isinstance(request, dict):
                body.update({name: value for name, value in request.items() if name != "model"})
        return body

    def token_source(self, settings: ProviderSettings, clock: Callable[[], float]) -> TokenSource | None:
        return AccessTokens.for_settings(settings, clock)

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + key}
