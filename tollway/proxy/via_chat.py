"""One generic exchange for every client API that reaches a provider through chat
completions, the internal form: client → chat → provider, and provider → chat → client,
streams included.

`ViaChat(client side, provider side)`: the client side (`tollway.proxy.client_sides`)
is shared by every provider; the provider side is the adapter's one translator per
direction and its stream decoder (Gemini's in `gemini_exchanges`, Bedrock's Converse in
`bedrock_exchanges`). A new provider that speaks its own API adds a provider side only.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from tollway.providers.client import Api
from tollway.proxy.client_sides import ChatClient, ClientSide, MessagesClient, ProviderErrors, ResponsesClient, StreamOut
from tollway.proxy.passthrough import StreamConverter
from tollway.proxy.request import ClientRequest
from tollway.usage import Usage


class ProviderSide(Protocol):
    """A provider's API seen from chat: its request from a chat request, its answer as a
    chat completion, its stream as chat chunks written by a client's `StreamOut`."""

    upstream_api: Api
    errors: ProviderErrors

    def from_chat(self, chat: dict[str, Any], model: str) -> dict[str, Any]: ...

    def to_chat(self, data: bytes, model: str) -> tuple[dict[str, Any], Usage | None]:
        """The answer as a chat completion naming ``model`` where the answer names none;
        raises `TranslationError` (a 502 naming the provider) for what is not an answer."""
        ...

    def stream(self, model: str, wants_usage: bool, out: StreamOut) -> StreamConverter: ...


class ViaChat:
    """A client API that reaches a provider's API through chat."""

    __slots__ = ("_client", "_provider", "upstream_api")

    def __init__(self, client: ClientSide, provider: ProviderSide) -> None:
        self._client = client
        self._provider = provider
        self.upstream_api = provider.upstream_api

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return self._provider.from_chat(self._client.to_chat(request), model)

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        chat, usage = self._provider.to_chat(data, model)
        return self._client.from_chat(chat), usage

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        return self._provider.stream(model, self._client.wants_usage(request), self._client.stream_out(model))

    def error(self, status: int, data: bytes) -> bytes:
        return self._client.error(status, data)


def chat_via(provider: ProviderSide) -> ViaChat:
    """The OpenAI chat client's exchange with ``provider``."""
    return ViaChat(ChatClient(provider.errors), provider)


def messages_via(provider: ProviderSide) -> ViaChat:
    """The Anthropic messages client's exchange with ``provider``."""
    return ViaChat(MessagesClient(provider.errors), provider)


def responses_via(provider: ProviderSide, name: str) -> ViaChat:
    """The Responses client's exchange with ``provider``, the provider configured as ``name``
    (named in refusals of stored-response features)."""
    return ViaChat(ResponsesClient(provider.errors, name), provider)
