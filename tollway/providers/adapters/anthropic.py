"""Anthropic's Messages API: the key as `x-api-key`, a pinned `anthropic-version`."""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from tollway.providers.adapters.base import MESSAGE_BATCHES, ProviderAdapter
from tollway.providers.apis import Api

if TYPE_CHECKING:
    from tollway.config.schema import ProviderSettings

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicAdapter(ProviderAdapter):
    """`type: anthropic`. Other client APIs reach it through Messages (chat ↔ messages)."""

    default_base_url = "https://api.anthropic.com"
    price_catalog_ids = ("anthropic", None)
    native_apis = frozenset({Api.MESSAGES, Api.COUNT_TOKENS})
    translation_api = Api.MESSAGES
    paths = MappingProxyType({Api.MESSAGES: "/v1/messages", Api.COUNT_TOKENS: "/v1/messages/count_tokens"})
    models_path = "/v1/models"
    batch_api = MESSAGE_BATCHES

    def base_url(self, settings: ProviderSettings) -> str:
        # The SDKs' base URL has no /v1; one configured with it is accepted as well.
        return super().base_url(settings).removesuffix("/v1")

    def check(self, settings: ProviderSettings) -> None:
        if settings.responses_api:
            raise ValueError("responses_api: an anthropic provider does not serve the Responses API "
                             "(requests to /v1/responses are translated to messages)")

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
