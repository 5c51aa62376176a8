"""Google's Gemini API (generativelanguage.googleapis.com): API keys as `x-goog-api-key`,
the model in the URL (`/v1beta/models/{model}:generateContent`), streams as SSE with
`alt=sse`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tollway.providers.adapters.base import ProviderAdapter
from tollway.providers.apis import Api

if TYPE_CHECKING:
    from tollway.config.schema import ProviderSettings

_METHODS = {Api.GENERATE_CONTENT: "generateContent", Api.EMBED_CONTENT: "embedContent",
            Api.GEMINI_COUNT_TOKENS: "countTokens"}


class GeminiAdapter(ProviderAdapter):
    """`type: gemini`. OpenAI chat clients reach it through chat ↔ generateContent; the
    Messages and Responses APIs reach chat first (the internal form), then Gemini."""

    default_base_url = "https://generativelanguage.googleapis.com"
    price_catalog_ids = ("google", None)
    native_apis = frozenset(_METHODS)
    translation_api = Api.GENERATE_CONTENT
    paths = MappingProxyType({api: f":{method}" for api, method in _METHODS.items()})
    models_path = "/v1beta/models"

    def base_url(self, settings: ProviderSettings) -> str:
        # Google's SDKs add the version themselves; a base URL given with it is accepted too.
        return super().base_url(settings).removesuffix("/v1beta")

    def url(self, base: str, settings: ProviderSettings, api: Api, model: str, stream: bool) -> str:
        # The model is the client's: quoted whole, so it cannot leave its path segment.
        path = f"{base}/v1beta/models/{quote(model.removeprefix('models/'), safe='-._~')}:{_METHODS[api]}"
        if stream and api is Api.GENERATE_CONTENT:
            return path.replace(":generateContent", ":streamGenerateContent") + "?alt=sse"
        return path

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    def listed_models(self, body: Mapping[str, Any]) -> list[str]:
        return [str(m["name"]).removeprefix("models/") for m in body.get("models", [])
                if isinstance(m, dict) and isinstance(m.get("name"), str)]
