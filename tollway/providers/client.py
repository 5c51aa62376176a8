"""One upstream provider: its keys, its URLs and its pooled HTTP client (the native
keep-alive client of `providers/http`, or aiohttp when `http_client: aiohttp`)."""

from __future__ import annotations

import random
import ssl
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.config.schema import EgressConfig, ProviderSettings
from tollway.governance.durations import parse_duration
from tollway.providers.adapters import adapter_for
from tollway.providers.adapters.anthropic import ANTHROPIC_VERSION
from tollway.providers.apis import Api
from tollway.providers.http import (
    HTTPClient,
    Origin,
    UpstreamHTTPError,
    UpstreamResponse,
    encode_bodyless,
    encode_request,
    header_block,
    request_prefix,
    split_url,
)
from tollway.providers.http.aiohttp_adapter import AiohttpClient
from tollway.providers.http.egress import choose_proxy, tls_context

__all__ = ["ANTHROPIC_VERSION", "Api", "NoUsableKey", "ProviderClient", "ProviderKey"]

_MAX_PREPARED = 4096  # (url, key) request prefixes kept; azure URLs name client-chosen models
_LIST_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class ProviderKey:
    id: str
    value: str
    weight: float
    models: frozenset[str]  # empty = every model

    def __repr__(self) -> str:  # the value is a secret: never in logs or tracebacks
        return f"ProviderKey(id={self.id!r})"


class NoUsableKey(Exception):
    """No key of the provider may serve this model for this virtual key."""


class ProviderClient:
    """Sends requests to one provider. Create inside the running event loop."""

    def __init__(self, name: str, settings: ProviderSettings, keys: list[ProviderKey], pool_size: int = 1024,
                 ssl_context: ssl.SSLContext | None = None, egress: EgressConfig | None = None) -> None:
        self.name = name
        self.type = settings.type  # for messages; behaviour that differs by type is the adapter's
        self.adapter = adapter = adapter_for(settings.type)
        self.settings = settings
        self.keys = keys
        self.base_url = base = adapter.base_url(settings)
        self.max_retries = settings.max_retries
        self.retry_backoff_s = settings.retry_backoff
        # Non-streaming: the whole exchange within `timeout`; streaming: no silence longer than it.
        self.timeout_s = _seconds(settings.timeout) or None
        connect = _seconds(settings.connect_timeout) or 5.0
        self._extra_headers = dict(settings.headers)
        # Signed providers (Bedrock's SigV4): each request's headers depend on its body and time.
        self._signer = adapter.request_signer(settings)
        self._native: HTTPClient | None = None
        self._aiohttp: AiohttpClient | None = None
        if settings.http_client == "aiohttp":
            self._aiohttp = AiohttpClient(max_connections=pool_size, connect_timeout=connect)
        else:
            egress = egress or EgressConfig()
            proxy = choose_proxy(base, settings.proxy, egress.http_proxy, egress.https_proxy, egress.no_proxy)
            context = ssl_context or tls_context(settings.ca_bundle, settings.client_cert, settings.client_key)
            self._native = HTTPClient(max_connections=pool_size, connect_timeout=connect, ssl_context=context,
                                      proxy=proxy)
        # (url, key id) -> origin and request bytes up to the Content-Length value.
        self._prepared: dict[tuple[str, str], tuple[Origin, bytes]] = {}
        # API -> the proxy's exchange for this provider (chosen by its adapter and settings:
        # passed through or translated); filled on first use.
        self.exchanges: dict[Api, Any] = {}

    def speaks(self, api: Api) -> bool:
        """Whether the provider serves ``api`` itself (no translation)."""
        return self.adapter.speaks(self.settings, api)

    @property
    def serves_responses_api(self) -> bool:
        """Whether /v1/responses passes through: by default for OpenAI and Azure OpenAI only
        (presets and other OpenAI-compatible servers say so with `responses_api: true`)."""
        return self.adapter.serves_responses_api(self.settings)

    def upstream_api(self, api: Api) -> Api:
        """The provider's API a request of the client's ``api`` is sent as: the same one
        where the provider serves it, else the one the adapter translates through."""
        return self.adapter.upstream_api(self.settings, api)

    def pick_key(self, model: str, allowed: frozenset[str] = frozenset()) -> ProviderKey:
        """A weighted random choice among the keys that may serve ``model``."""
        usable = [k for k in self.keys if (not k.models or model in k.models) and (not allowed or k.id in allowed)]
        if not usable:
            raise NoUsableKey(f"no key of provider {self.name!r} may serve model {model!r}")
        if len(usable) == 1:
            return usable[0]
        return random.choices(usable, weights=[k.weight for k in usable])[0]

    def url(self, api: Api, model: str, stream: bool = False) -> str:
        return self.adapter.url(self.base_url, self.settings, api, model, stream)

    def responses_url(self, suffix: str) -> str:
        """The URL of ``/responses`` + ``suffix`` (``/{id}``, ``/{id}/cancel`` ...), Azure's included."""
        return self.adapter.responses_url(self.base_url, self.settings, suffix)

    def upstream_model(self, model: str) -> str:
        """The model name the provider expects in a body (an Azure deployment, else ``model``)."""
        return self.adapter.upstream_model(self.settings, model)

    def headers(self, key: ProviderKey) -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept-Encoding": "identity", **self._extra_headers,
                **self.adapter.auth_headers(key.value)}

    async def post(self, api: Api, model: str, body: bytes, key: ProviderKey, stream: bool) -> UpstreamResponse:
        """One attempt; raises asyncio.TimeoutError or UpstreamHTTPError."""
        url = self.url(api, model, stream)
        if self._signer is not None:
            return await self._signed_post(url, body, key, stream)
        native = self._native
        if native is None:
            assert self._aiohttp is not None
            if stream:
                return await self._aiohttp.post(url, body, self.headers(key), idle=self.timeout_s)
            return await self._aiohttp.post(url, body, self.headers(key), total=self.timeout_s)
        prepared = self._prepared.get((url, key.id))
        if prepared is None:
            prepared = self._prepare(url, key)
        origin, prefix = prepared
        if stream:
            return await native.request(origin, encode_request(prefix, body), idle=self.timeout_s)
        return await native.request(origin, encode_request(prefix, body), total=self.timeout_s)

    async def _signed_post(self, url: str, body: bytes, key: ProviderKey, stream: bool) -> UpstreamResponse:
        """A POST whose headers are signed for this body and this moment (never prepared ahead)."""
        assert self._signer is not None
        headers = await self._signer.sign("POST", url, self.headers(key), body)
        return await self.post_to(url, headers, body, len(body), stream)

    async def send(self, method: str, url: str, key: ProviderKey, body: bytes | None) -> UpstreamResponse:
        """One request of any method (the stored-response routes); raises like `post`."""
        if self._native is None:
            assert self._aiohttp is not None
            return await self._aiohttp.request(method, url, body, self.headers(key), total=self.timeout_s)
        origin, target, headers = self._addressed(url, self.headers(key))  # through the egress proxy, if any
        block = _header_block(origin, headers)
        if body is None:
            request = encode_bodyless(method, target, block)
        else:
            request = encode_request(request_prefix(method, target, block), body)
        return await self._native.request(origin, request, total=self.timeout_s)

    async def list_models(self) -> list[str]:
        """The models the provider lists itself (none where it lists none); off the hot path."""
        path = self.adapter.models_path
        if path is None:
            return []
        return self.adapter.listed_models(await self.get_json(path, self.keys[0]))

    async def post_to(self, url: str, headers: dict[str, str], body: bytes | AsyncIterable[bytes], length: int,
                      stream: bool) -> UpstreamResponse:
        """One POST of ``body`` (``length`` bytes; an async iterable is written as it comes,
        never retried) with ``headers`` (the media routes); raises like `post`. ``stream``:
        the response is relayed as it arrives (bounded per read, not in total)."""
        total, idle = (None, self.timeout_s) if stream else (self.timeout_s, None)
        if self._native is None:
            assert self._aiohttp is not None
            headers = {**headers, "Content-Length": str(length)}
            if isinstance(body, bytes):
                return await self._aiohttp.post(url, body, headers, total=total, idle=idle)
            return await self._aiohttp.upload(url, body, headers, total=total, idle=idle)
        origin, target, headers = self._addressed(url, headers)
        head = request_prefix("POST", target, _header_block(origin, headers)) + b"%d\r\n\r\n" % length
        if isinstance(body, bytes):
            return await self._native.request(origin, head + body, total=total, idle=idle)
        return await self._native.request_streaming(origin, head, body, total=self.timeout_s)

    async def get_json(self, path: str, key: ProviderKey) -> Mapping[str, Any]:
        """A small JSON document (the model list); off the hot path."""
        url = self.base_url + path
        if self._native is None:
            assert self._aiohttp is not None
            listed: Mapping[str, Any] = await self._aiohttp.get_json(url, self.headers(key), _LIST_TIMEOUT_S)
            return listed
        origin, target, headers = self._addressed(url, self.headers(key))
        request = encode_bodyless("GET", target, _header_block(origin, headers))
        response = await self._native.request(origin, request, total=_LIST_TIMEOUT_S)
        try:
            data = await response.read()
        finally:
            response.release()
        if response.status >= 400:
            raise UpstreamHTTPError(f"{url} answered {response.status}")
        parsed: Mapping[str, Any] = orjson.loads(data)
        return parsed

    async def close(self) -> None:
        if self._native is not None:
            await self._native.close()
        if self._aiohttp is not None:
            await self._aiohttp.close()

    def _prepare(self, url: str, key: ProviderKey) -> tuple[Origin, bytes]:
        """Everything of a request to ``url`` with ``key`` but the body, cached."""
        origin, target, headers = self._addressed(url, self.headers(key))
        prepared = origin, request_prefix("POST", target, _header_block(origin, headers))
        if len(self._prepared) >= _MAX_PREPARED:
            self._prepared.clear()
        self._prepared[(url, key.id)] = prepared
        return prepared


    def _addressed(self, url: str, headers: dict[str, str]) -> tuple[Origin, str, dict[str, str]]:
        """Origin, request target and headers for ``url``: absolute-form, with the proxy's
        credentials, when the request goes to a forward proxy as such (plain HTTP)."""
        origin, target = _split(url)
        native = self._native
        if native is not None and native.proxy is not None and native.uses_absolute_form(origin):
            target = f"{origin.scheme}://{origin.host_header}{target}"
            if native.proxy.authorization:
                headers = {**headers, "Proxy-Authorization": native.proxy.authorization}
        return origin, target, headers


def _split(url: str) -> tuple[Origin, str]:
    try:
        return split_url(url)
    except ValueError as exc:  # a misconfigured base_url: a 502 that names it
        raise UpstreamHTTPError(f"invalid upstream URL {url!r}: {exc}") from None


def _header_block(origin: Origin, headers: Mapping[str, str]) -> bytes:
    try:
        return header_block(origin, headers)
    except ValueError as exc:
        raise UpstreamHTTPError(f"invalid upstream header: {exc}") from None


def _seconds(text: str) -> float:
    duration = parse_duration(text)
    return (duration.fixed_ms or 0) / 1000
