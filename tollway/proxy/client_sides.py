"""The client side of an exchange that reaches a provider through chat completions, the
internal form: what differs between the client APIs (OpenAI chat, Anthropic messages, the
Responses API) and nothing about the provider.

A client side turns the client's request into chat and chat back into the client's API,
with the translators every provider shares (messages ↔ chat, Responses ↔ chat); its
stream writer (`ChatOut`, `MessagesOut`, `ResponsesOut`) writes chat chunks as the client's
events. The provider side is one translator per direction (`tollway.proxy.via_chat`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from tollway.providers._chat_response_to_responses import chat_response_to_responses
from tollway.providers._chat_stream_to_responses import ChatStreamToResponses
from tollway.providers._responses_request_to_chat import responses_request_to_chat
from tollway.providers._translate_common import UpstreamStreamError
from tollway.providers.anthropic_translate import ChatStreamToMessages, messages_request_to_chat
from tollway.providers.anthropic_translate import chat_response_to_messages as chat_to_messages
from tollway.providers.sse import encode_event
from tollway.proxy.passthrough import anthropic_error_from, anthropic_stream_error, openai_error_from, openai_stream_error
from tollway.proxy.request import ClientRequest

_DONE = b"data: [DONE]\n\n"

# A provider's error body in a client's shape; None when the body is not the provider's shape.
ErrorMapper = Callable[[int, bytes], "bytes | None"]


@dataclass(frozen=True, slots=True)
class ProviderErrors:
    """How a provider's error bodies read in OpenAI's and Anthropic's shapes."""

    to_openai: ErrorMapper
    to_anthropic: ErrorMapper

    def openai(self, status: int, data: bytes) -> bytes:
        return self.to_openai(status, data) or openai_error_from(status, data)

    def anthropic(self, status: int, data: bytes) -> bytes:
        return self.to_anthropic(status, data) or anthropic_error_from(status, data)


class ChatOut:
    """Chat chunks as an OpenAI chat stream."""

    def feed(self, chunk: dict[str, Any]) -> bytes:
        return encode_event(orjson.dumps(chunk))

    def finish(self) -> bytes:
        return _DONE

    def error(self, error: UpstreamStreamError) -> bytes:
        return encode_event(orjson.dumps(error.openai_body()))

    def error_event(self, message: str) -> bytes:
        return openai_stream_error(message)


class _EventsOut:
    """Chat chunks as the named events a stream translator makes of them."""

    def __init__(self, translator: ChatStreamToMessages | ChatStreamToResponses) -> None:
        self._translator = translator

    def feed(self, chunk: dict[str, Any]) -> bytes:
        return b"".join(encode_event(orjson.dumps(data), name) for name, data in self._translator.feed(chunk))

    def finish(self) -> bytes:
        return b"".join(encode_event(orjson.dumps(data), name) for name, data in self._translator.finish())


class MessagesOut(_EventsOut):
    """Chat chunks as Anthropic message events."""

    def __init__(self, model: str) -> None:
        super().__init__(ChatStreamToMessages(model))

    def error(self, error: UpstreamStreamError) -> bytes:
        return encode_event(orjson.dumps(error.anthropic_body()), "error")

    def error_event(self, message: str) -> bytes:
        return anthropic_stream_error(message)


class ResponsesOut(_EventsOut):
    """Chat chunks as Responses API events."""

    _translator: ChatStreamToResponses

    def __init__(self, model: str) -> None:
        super().__init__(ChatStreamToResponses(model))

    def error(self, error: UpstreamStreamError) -> bytes:
        name, data = self._translator.error_event(error.error_type, error.message)
        return encode_event(orjson.dumps(data), name)

    def error_event(self, message: str) -> bytes:
        name, data = self._translator.error_event("stream_interrupted", message)
        return encode_event(orjson.dumps(data), name)


StreamOut = ChatOut | MessagesOut | ResponsesOut


class ClientSide(Protocol):
    """What differs between the client APIs that reach a provider through chat."""

    def to_chat(self, request: ClientRequest) -> dict[str, Any]: ...

    def from_chat(self, chat: dict[str, Any]) -> bytes: ...

    def stream_out(self, model: str) -> StreamOut: ...

    def wants_usage(self, request: ClientRequest) -> bool: ...

    def error(self, status: int, data: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ChatClient:
    """An OpenAI chat client: chat is its own API."""

    errors: ProviderErrors

    def to_chat(self, request: ClientRequest) -> dict[str, Any]:
        return request.body

    def from_chat(self, chat: dict[str, Any]) -> bytes:
        return orjson.dumps(chat)

    def stream_out(self, model: str) -> StreamOut:
        return ChatOut()

    def wants_usage(self, request: ClientRequest) -> bool:
        return request.wants_usage

    def error(self, status: int, data: bytes) -> bytes:
        return self.errors.openai(status, data)


@dataclass(frozen=True, slots=True)
class MessagesClient:
    """An Anthropic messages client: messages → chat, and back."""

    errors: ProviderErrors

    def to_chat(self, request: ClientRequest) -> dict[str, Any]:
        return messages_request_to_chat(request.body)

    def from_chat(self, chat: dict[str, Any]) -> bytes:
        return orjson.dumps(chat_to_messages(chat, chat["model"]))

    def stream_out(self, model: str) -> StreamOut:
        return MessagesOut(model)

    def wants_usage(self, request: ClientRequest) -> bool:
        return True  # message_delta carries the usage

    def error(self, status: int, data: bytes) -> bytes:
        return self.errors.anthropic(status, data)


@dataclass(frozen=True, slots=True)
class ResponsesClient:
    """A Responses API client: Responses → chat, and back (``provider`` names the
    provider in refusals of stored-response features)."""

    errors: ProviderErrors
    provider: str

    def to_chat(self, request: ClientRequest) -> dict[str, Any]:
        return responses_request_to_chat(request.body, self.provider)

    def from_chat(self, chat: dict[str, Any]) -> bytes:
        return orjson.dumps(chat_response_to_responses(chat, chat["model"]))

    def stream_out(self, model: str) -> StreamOut:
        return ResponsesOut(model)

    def wants_usage(self, request: ClientRequest) -> bool:
        return True  # response.completed carries the usage

    def error(self, status: int, data: bytes) -> bytes:
        return self.errors.openai(status, data)
