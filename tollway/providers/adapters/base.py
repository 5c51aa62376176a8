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

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from tollway.providers.apis import Api

if TYPE_CHECKING:  # the schema imports the adapters: the type is for annotations only
    from tollway.config.schema import ProviderSettings


class RequestSigner(Protocol):
    """Signs each request of one provider (AWS SigV4): the headers depend on the body and
    the time, so such a provider's requests are never prepared ahead."""

    async def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]: ...


OPENAI_BATCHES = "openai_batches"
"""OpenAI's batch API: `/files` (JSONL input files) and `/batches` (also Azure OpenAI's)."""
MESSAGE_BATCHES = "message_batches"
"""Anthropic's batch API: `/v1/messages/batches`, the requests inline."""


class TokenSource(Protocol):
    """Bearer tokens for a provider that authenticates with short-lived tokens (Vertex AI's
    OAuth access tokens) instead of its configured keys."""

    async def token(self) -> str:
        """A token valid now (minted or refreshed when needed); raises `TokenUnavailable`."""
        ...

    def invalidate(self, token: str) -> None:
        """The provider refused ``token``: the next call mints a new one."""
        ...


class TokenUnavailable(Exception):
    """No token could be had (the token endpoint failed or refused the credentials)."""


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
    # Its batch API (`tollway.proxy.batch_*`): OPENAI_BATCHES or MESSAGE_BATCHES; None where
    # the gateway has none for it.
    batch_api: str | None = None


    # Whether the provider API a client API goes to depends on the model (Vertex AI serves
    # Gemini and Claude models at different paths in different wire formats).
    routes_by_model: bool = False
    # Whether `tweak_body` changes upstream bodies (the exchange is then wrapped to call it).
    tweaks_body: bool = False

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

    def upstream_api(self, settings: ProviderSettings, api: Api, model: str = "") -> Api:
        """The provider API a request of the client's ``api`` (for ``model``, where
        `routes_by_model`) is sent as: the same one where the provider serves it, else the
        one this adapter translates through."""
        return api if self.speaks(settings, api) else self.translation_api

    def tweak_body(self, settings: ProviderSettings, api: Api, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """The upstream body of ``api`` as this provider wants it (with `tweaks_body`)."""
        return body

    def token_source(self, settings: ProviderSettings, clock: Callable[[], float]) -> TokenSource | None:
        """Where the bearer tokens of a provider come from when its keys do not authenticate
        it (None: `auth_headers` of the key); ``clock`` is monotonic seconds."""
        return None

    def url(self, base: str, settings: ProviderSettings, api: Api, model: str, stream: bool) -> str:
        """The URL a request of ``api`` for ``model`` is posted to."""
        return base + self.paths[api]

    def responses_url(self, base: str, settings: ProviderSettings, suffix: str) -> str:
        """The URL of ``/responses`` + ``suffix`` (the stored-response routes)."""
        return f"{base}/responses{suffix}"

    def batch_url(self, base: str, settings: ProviderSettings, path: str) -> str:
        """The URL of a files or batches route: ``path`` as the provider's own API names it
        below its base (``/files``, ``/batches/{id}/cancel``, ``/v1/messages/batches``)."""
        return base + path

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
