"""Exchanges with a Bedrock provider.

Every chat-shaped client API (OpenAI chat, Anthropic messages, the Responses API) reaches
Converse through chat completions, the internal form, with one generic exchange:
`ViaConverse(client side)`. The client side turns the client's request into chat and chat
back into the client's API (the translators every other provider uses); the Bedrock side
is the adapter's one translator per direction (`bedrock_request`, `bedrock_response`) and
its event-stream decoder. `/v1/embeddings` reaches InvokeModel (`EmbeddingsViaInvokeModel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from tollway.providers._chat_response_to_responses import chat_response_to_responses
from tollway.providers._responses_request_to_chat import responses_request_to_chat
from tollway.providers._translate_common import TranslationError, UpstreamStreamError
from tollway.providers.adapters.bedrock_embeddings import embeddings_request, embeddings_response
from tollway.providers.adapters.bedrock_eventstream import EventStreamDecoder, EventStreamError
from tollway.providers.adapters.bedrock_request import chat_request_to_converse
from tollway.providers.adapters.bedrock_response import (
    ConverseStreamToChat,
    bedrock_error_to_anthropic,
    bedrock_error_to_openai,
    converse_response_to_chat,
    stream_exception,
    usage_from_converse,
)
from tollway.providers.anthropic_translate import chat_response_to_messages as chat_to_messages
from tollway.providers.anthropic_translate import messages_request_to_chat
from tollway.providers.client import Api
from tollway.proxy.gemini_exchanges import _ChatOut, _MessagesOut, _ResponsesOut
from tollway.proxy.passthrough import StreamConverter, anthropic_error_from, load_object, openai_error_from
from tollway.proxy.request import ClientRequest
from tollway.usage import Usage

_Out = _ChatOut | _MessagesOut | _ResponsesOut


class ClientSide(Protocol):
    """What differs between the client APIs that reach a provider through chat."""

    def to_chat(self, request: ClientRequest) -> dict[str, Any]: ...

    def from_chat(self, chat: dict[str, Any]) -> bytes: ...

    def stream_out(self, request: ClientRequest) -> _Out: ...

    def wants_usage(self, request: ClientRequest) -> bool: ...

    def error(self, status: int, data: bytes) -> bytes: ...


class ChatClient:
    """An OpenAI chat client: chat is its own API."""

    def to_chat(self, request: ClientRequest) -> dict[str, Any]:
        return request.body

    def from_chat(self, chat: dict[str, Any]) -> bytes:
        return orjson.dumps(chat)

    def stream_out(self, request: ClientRequest) -> _Out:
        return _ChatOut()

    def wants_usage(self, request: ClientRequest) -> bool:
        return request.wants_usage

    def error(self, status: int, data: bytes) -> bytes:
        return bedrock_error_to_openai(status, data) or openai_error_from(status, data)


class MessagesClient:
    """An Anthropic messages client: messages → chat, and back."""

    def to_chat(self, request: ClientRequest) -> dict[str, Any]:
        return messages_request_to_chat(request.body)

    def from_chat(self, chat: dict[str, Any]) -> bytes:
        return orjson.dumps(chat_to_messages(chat, chat["model"]))

    def stream_out(self, request: ClientRequest) -> _Out:
        return _MessagesOut(request.model)

    def wants_usage(self, request: ClientRequest) -> bool:
        return True  # message_delta carries the usage

    def error(self, status: int, data: bytes) -> bytes:
        return bedrock_error_to_anthropic(status, data) or anthropic_error_from(status, data)


@dataclass(frozen=True, slots=True)
class ResponsesClient:
    """A Responses API client: Responses → chat, and back (``provider`` names the
    provider in refusals of stored-response features)."""

    provider: str

    def to_chat(self, request: ClientRequest) -> dict[str, Any]:
        return responses_request_to_chat(request.body, self.provider)

    def from_chat(self, chat: dict[str, Any]) -> bytes:
        return orjson.dumps(chat_response_to_responses(chat, chat["model"]))

    def stream_out(self, request: ClientRequest) -> _Out:
        return _ResponsesOut(request.model)

    def wants_usage(self, request: ClientRequest) -> bool:
        return True  # response.completed carries the usage

    def error(self, status: int, data: bytes) -> bytes:
        return bedrock_error_to_openai(status, data) or openai_error_from(status, data)


class ViaConverse:
    """A client API that reaches Bedrock's Converse through chat: client → chat → Converse,
    and Converse → chat → client, streams included."""

    upstream_api = Api.CONVERSE

    def __init__(self, client: ClientSide) -> None:
        self._client = client

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return chat_request_to_converse(self._client.to_chat(request), model)

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        if body is None or not isinstance(body.get("output"), dict):  # a 502 naming the provider
            raise TranslationError("the Converse answer holds no output")
        # Converse does not name the model in its answer; the client knows which it asked for.
        return self._client.from_chat(converse_response_to_chat(body, "")), usage_from_converse(body.get("usage"))

    def stream(self, request: ClientRequest) -> StreamConverter:
        return _ConverseStream(ConverseStreamToChat(request.model, self._client.wants_usage(request)),
                               self._client.stream_out(request))

    def error(self, status: int, data: bytes) -> bytes:
        return self._client.error(status, data)


class EmbeddingsViaInvokeModel:
    """OpenAI embeddings client, Bedrock provider: InvokeModel with the body of the model's
    family (Titan text embeddings, Cohere embed)."""

    upstream_api = Api.INVOKE_MODEL

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return embeddings_request(request.body, model)

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        translated = embeddings_response(body) if body is not None else None
        if translated is None:  # a 502 naming the provider
            raise TranslationError("the InvokeModel answer holds no embeddings")
        return orjson.dumps(translated[0]), translated[1]

    def stream(self, request: ClientRequest) -> StreamConverter:
        raise NotImplementedError  # embeddings are never streamed

    def error(self, status: int, data: bytes) -> bytes:
        return bedrock_error_to_openai(status, data) or openai_error_from(status, data)


class _ConverseStream:
    """A ConverseStream (event-stream framing), translated to chat chunks, written in the
    client's API. A frame that fails its CRC ends the stream with an error event."""

    def __init__(self, converse: ConverseStreamToChat, out: _Out) -> None:
        self._decoder = EventStreamDecoder()
        self._converse = converse
        self._out = out
        self._failed = False
        self.usage: Usage | None = None
        self.produced = 0
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self._failed:
            return b""
        out: list[bytes] = []
        try:
            for message in self._decoder.feed(chunk):
                if message.message_type != "event":
                    raise stream_exception(message.event_type, message.payload)
                payload = load_object(message.payload) or {}
                chat_chunks = self._converse.feed(message.event_type, payload)
                self.produced += sum(1 for c in chat_chunks if c["choices"] and set(c["choices"][0]["delta"]) - {"role"})
                out.extend(self._out.feed(chat_chunk) for chat_chunk in chat_chunks)
        except UpstreamStreamError as exc:
            self._fail(exc.message)
            out.append(self._out.error(exc))
        except EventStreamError as exc:
            self._fail(f"the provider's event stream is corrupt: {exc}")
            out.append(self._out.error_event(self.error or ""))
        self.usage = self._converse.usage
        return b"".join(out)

    def _fail(self, message: str) -> None:
        self._failed, self.error = True, message

    def finish(self) -> bytes:
        if self._failed:
            return b""
        if self._decoder.pending:
            self._fail("the provider's event stream ended inside a message")
            return self._out.error_event(self.error or "")
        return b"".join(self._out.feed(chunk) for chunk in self._converse.finish()) + self._out.finish()

    def error_event(self, message: str) -> bytes:
        return self._out.error_event(message)


_CHAT, _MESSAGES = ChatClient(), MessagesClient()
CHAT_VIA_CONVERSE = ViaConverse(_CHAT)
MESSAGES_VIA_CONVERSE = ViaConverse(_MESSAGES)


def responses_via_converse(provider: str) -> ViaConverse:
    """The Responses API's exchange for the Bedrock provider named ``provider``."""
    return ViaConverse(ResponsesClient(provider))
