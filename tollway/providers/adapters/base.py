"""What Tollway knows about one provider type, behind one interface.

An adapter owns everything that differs between provider types: where its API lives
(base URL, the path of each API), how a request is authenticated, which wire API it
speaks natively and which API foreign client APIs are translated through, how its model
list reads, where its models are found in the price catalog, and what its configuration
must hold. Code outside `tollway.providers.adapters` asks the adapter and never compares
a provider type (a test greps the source for that).

Adapters are stateless: one instance per type serves every provider of that type, and
each call is given the provider's settings. This module imports nothing from the
configuration (the schema asks adapters to check provider settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from tollway.providers.apis import Api

if TYPE_CHECKING:  # the schema imports the adapters: the type is for annotations only
    from tollway.config.schema import ProviderSettings


class RequestSigner(Protocol):
    """Signs each request of one provider (AWS SigV4): the headers depend on the body and
    the time, so such a provider's requests are never prepared ahead."""

    async def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]: ...


class ProviderAdapter:
    """One provider type. Subclasses set the class attributes and override what differs."""

    default_base_url: str = ""
    needs_key: bool = True
    # genai-prices provider ids to look a model up under, in order (None: by model name alone)
    price_catalog_ids: tuple[str | None, ...] = (None,)
    # The provider's own wire APIs, and the one every other client API is translated
    # through: the provider's side of the internal form (see `tollway.proxy.exchange_choice`).
    native_apis: frozenset[Api] = frozenset()
    translation_api: Api = Api.CHAT
    serves_responses_api_by_default: bool = False
    paths: Mapping[Api, str] = MappingProxyType({})
    models_path: str | None = "/models"  # None: the provider does not list its models
    # The media routes (images, audio, moderations) it serves at `paths`, and what a
    # refusal of the others adds for the operator.
    media_apis: frozenset[Api] = frozenset()
    media_note: str = ""

    def base_url(self, settings: ProviderSettings) -> str:
        """The configured base URL (or the type's default), without a trailing slash."""
        return (settings.base_url or self.default_base_url).rstrip("/")

    def check(self, settings: ProviderSettings) -> None:
        """Raise ValueError naming what the provider's configuration lacks or contradicts."""
        return None

    def serves_responses_api(self, settings: ProviderSettings) -> bool:
        """Whether /v1/responses passes through to the provider (its own Responses API)."""
        if Api.RESPONSES not in self.paths:
            return False
        return settings.responses_api if settings.responses_api is not None else self.serves_responses_api_by_default

    def speaks(self, settings: ProviderSettings, api: Api) -> bool:
        """Whether the provider serves ``api`` itself (no translation)."""
        if api is Api.RESPONSES or api is Api.RESPONSES_INPUT_TOKENS:
            return self.serves_responses_api(settings)
        return api in self.native_apis

    def upstream_api(self, settings: ProviderSettings, api: Api) -> Api:
        """The provider API a request of the client's ``api`` is sent as: the same one
        where the provider serves it, else the one this adapter translates through."""
        return api if self.speaks(settings, api) else self.translation_api

    def url(self, base: str, settings: ProviderSettings, api: Api, model: str, stream: bool) -> str:
        """The URL a request of ``api`` for ``model`` is posted to."""
        return base + self.paths[api]

    def responses_url(self, base: str, settings: ProviderSettings, suffix: str) -> str:
        """The URL of ``/responses`` + ``suffix`` (the stored-response routes)."""
        return f"{base}/responses{suffix}"

    def upstream_model(self, settings: ProviderSettings, model: str) -> str:
        """The model name the provider expects in a body."""
        return model

    def auth_headers(self, key: str) -> dict[str, str]:
        """The headers that authenticate a request with the provider key ``key``."""
        return {"Authorization": "Bearer " + key}

    def request_signer(self, settings: ProviderSettings) -> RequestSigner | None:
        """The signer of the provider's requests, where each request is signed (one per provider)."""
        return None

    def listed_models(self, body: Mapping[str, Any]) -> list[str]:
        """The model ids of the provider's model-list answer."""
        return [str(m["id"]) for m in body.get("data", []) if isinstance(m, dict) and "id" in m]
