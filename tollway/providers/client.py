"""One upstream provider: its keys, its URLs and its shared aiohttp session."""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from tollway.config.schema import ProviderSettings
from tollway.governance.durations import parse_duration

ANTHROPIC_VERSION = "2023-06-01"
_DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}


class Api(str, enum.Enum):
    """The wire API of a request: what the client speaks, or what a provider speaks."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    MESSAGES = "messages"  # Anthropic


_OPENAI_PATHS = {Api.CHAT: "/chat/completions", Api.COMPLETIONS: "/completions", Api.EMBEDDINGS: "/embeddings"}


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

    def __init__(self, name: str, settings: ProviderSettings, keys: list[ProviderKey], pool_size: int = 1024) -> None:
        self.name = name
        self.type = settings.type
        self.settings = settings
        self.keys = keys
        base = (settings.base_url or _DEFAULT_BASE_URLS.get(settings.type, "")).rstrip("/")
        if settings.type == "anthropic":
            base = base.removesuffix("/v1")
        self.base_url = base
        self.max_retries = settings.max_retries
        self.retry_backoff_s = settings.retry_backoff
        read = _seconds(settings.timeout)
        connect = _seconds(settings.connect_timeout)
        self.timeout = aiohttp.ClientTimeout(total=read, sock_connect=connect)
        self.stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
        connector = aiohttp.TCPConnector(limit=pool_size, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        # auto_decompress=False: bytes pass through as they came; we ask for identity anyway.
        # (No skip_auto_headers: aiohttp rebuilds that set on every request.)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        self._extra_headers = dict(settings.headers)

    def speaks(self, api: Api) -> bool:
        if self.type == "anthropic":
            return api is Api.MESSAGES
        return api is not Api.MESSAGES

    def pick_key(self, model: str, allowed: frozenset[str] = frozenset()) -> ProviderKey:
        """A weighted random choice among the keys that may serve ``model``."""
        usable = [k for k in self.keys if (not k.models or model in k.models) and (not allowed or k.id in allowed)]
        if not usable:
            raise NoUsableKey(f"no key of provider {self.name!r} may serve model {model!r}")
        if len(usable) == 1:
            return usable[0]
        return random.choices(usable, weights=[k.weight for k in usable])[0]

    def url(self, api: Api, model: str) -> str:
        if self.type == "anthropic":
            return self.base_url + "/v1/messages"
        if self.type == "azure":
            deployment = self.settings.deployments.get(model, model)
            return f"{self.base_url}/openai/deployments/{deployment}{_OPENAI_PATHS[api]}?api-version={self.settings.api_version}"
        return self.base_url + _OPENAI_PATHS[api]

    def headers(self, key: ProviderKey) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", **self._extra_headers}
        if self.type == "anthropic":
            headers["x-api-key"] = key.value
            headers["anthropic-version"] = ANTHROPIC_VERSION
        elif self.type == "azure":
            headers["api-key"] = key.value
        else:
            headers["Authorization"] = "Bearer " + key.value
        return headers

    async def post(self, api: Api, model: str, body: bytes, key: ProviderKey, stream: bool) -> aiohttp.ClientResponse:
        """One attempt; raises asyncio.TimeoutError or aiohttp.ClientError."""
        return await self.session.post(
            self.url(api, model), data=body, headers=self.headers(key),
            timeout=self.stream_timeout if stream else self.timeout,
        )

    async def get_json(self, path: str, key: ProviderKey) -> Mapping:
        async with self.session.get(self.base_url + path, headers=self.headers(key), timeout=aiohttp.ClientTimeout(total=3)) as resp:
            resp.raise_for_status()
            return await resp.json(content_type=None)

    async def close(self) -> None:
        await self.session.close()


def _seconds(text: str) -> float:
    duration = parse_duration(text)
    return (duration.fixed_ms or 0) / 1000
