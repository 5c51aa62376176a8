"""Exchanges with a Bedrock provider.

Every chat-shaped client API (OpenAI chat, Anthropic messages, the Responses API) reaches
Converse through chat completions, the internal form, with the generic exchange of
`tollway.proxy.via_chat` over `ConverseSide`: the adapter's one translator per direction
(`bedrock_request`, `bedrock_response`) and its event-stream decoder. `/v1/embeddings`
reaches InvokeModel (`EmbeddingsViaInvokeModel`).
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.providers._translate_common import TranslationError, UpstreamStreamError
from tollway.providers.adapters.bedrock_embeddings import embeddings_request, embeddings_response
from tollway.providers.adapters.bedrock_errors import aws_error_from, converse_stream_error
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
from tollway.providers.anthropic_translate import messages_request_to_chat
from tollway.providers.client import Api
from tollway.proxy.client_sides import ClientSide, ProviderErrors, ResponsesClient, StreamOut
from tollway.proxy.passthrough import StreamConverter, load_object
from tollway.proxy.request import ClientRequest
from tollway.proxy.via_chat import ViaChat, chat_via, messages_via, responses_via
from tollway.usage import Usage


class ConverseSide:
    """Bedrock's Converse seen from chat: the adapter's translators and event-stream decoder."""

    upstream_api = Api.CONVERSE
    errors = ProviderErrors(bedrock_error_to_openai, bedrock_error_to_anthropic)

    def from_chat(self, chat: dict[str, Any], model: str) -> dict[str, Any]:
        return chat_request_to_converse(chat, model)

    def to_chat(self, data: bytes, model: str) -> tuple[dict[str, Any], Usage | None]:
        body = load_object(data)
        if body is None or not isinstance(body.get("output"), dict):  # a 502 naming the provider
            raise TranslationError("the Converse answer holds no output")
        # Converse does not name the model in its answer: the model asked for is named.
        return converse_response_to_chat(body, model), usage_from_converse(body.get("usage"))

    def stream(self, model: str, wants_usage: bool, out: StreamOut) -> StreamConverter:
        return _ConverseStream(ConverseStreamToChat(model, wants_usage), out)


class EmbeddingsViaInvokeModel:
    """OpenAI embeddings client, Bedrock provider: InvokeModel with the body of the model's
    family (Titan text embeddings, Cohere embed)."""

    upstream_api = Api.INVOKE_MODEL

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return embeddings_request(request.body, model)

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        translated = embeddings_response(body, model) if body is not None else None
        if translated is None:  # a 502 naming the provider
            raise TranslationError("the InvokeModel answer holds no embeddings")
        return orjson.dumps(translated[0]), translated[1]

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        raise NotImplementedError  # embeddings are never streamed

    def error(self, status: int, data: bytes) -> bytes:
        return ConverseSide.errors.openai(status, data)


class _ConverseStream:
    """A ConverseStream (event-stream framing), translated to chat chunks, written in the
    client's API. A frame that fails its CRC ends the stream with an error event."""

    def __init__(self, converse: ConverseStreamToChat, out: StreamOut) -> None:
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


class CountTokensViaCountTokens:
    """A counting client, an Anthropic model on Bedrock: Bedrock's CountTokens counts the
    request as Converse would take it (client API → chat → Converse: system, tools and
    thinking included). ``client``: how the client's request reads as chat; Anthropic's
    `count_tokens` (the default), or the Responses API's `input_tokens`."""

    upstream_api = Api.BEDROCK_COUNT_TOKENS

    def __init__(self, client: ClientSide | None = None) -> None:
        self._client = client

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        chat = self._client.to_chat(request) if self._client else messages_request_to_chat(request.body)
        converse = chat_request_to_converse(chat, model)
        return {"input": {"converse": {name: value for name, value in converse.items() if name in _COUNTED}}}

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        count = (load_object(data) or {}).get("inputTokens")
        if not isinstance(count, int) or isinstance(count, bool):  # a 502 naming the provider
            raise TranslationError("the CountTokens answer holds no inputTokens")
        if self._client is not None:
            return orjson.dumps({"object": "response.input_tokens", "input_tokens": count}), None
        return orjson.dumps({"input_tokens": count}), None  # counted, never charged

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        raise NotImplementedError  # counting is never streamed

    def error(self, status: int, data: bytes) -> bytes:
        return self._client.error(status, data) if self._client else ConverseSide.errors.anthropic(status, data)


def responses_tokens_via_count_tokens(provider: str) -> CountTokensViaCountTokens:
    """`/v1/responses/input_tokens` for the Bedrock provider named ``provider``."""
    return CountTokensViaCountTokens(ResponsesClient(ConverseSide.errors, provider))


# What CountTokens takes of a Converse body (ConverseTokensRequest): what is counted.
_COUNTED = ("messages", "system", "toolConfig", "additionalModelRequestFields")


class ConversePassthrough:
    """A Bedrock client (the gateway's own `/model/{modelId}/converse` and
    `/converse-stream`), Bedrock provider: the body goes on as it came (less the route's
    fields), the answer and the event stream come back as Bedrock sent them; the usage is
    read on the way."""

    upstream_api = Api.CONVERSE

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return {name: value for name, value in request.body.items() if name not in _ROUTE_FIELDS}

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        return data, usage_from_converse(body.get("usage")) if body else None

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        return _ConverseRelay()

    def error(self, status: int, data: bytes) -> bytes:
        return aws_error_from(status, data)


_ROUTE_FIELDS = ("model", "stream")  # the path's (`tollway.proxy.bedrock_route`), not Converse's


class _ConverseRelay:
    """Relays a ConverseStream's bytes unchanged, decoding its messages on the side: the
    usage (`metadata`), the content produced, an exception the provider sent mid-stream."""

    def __init__(self) -> None:
        self._decoder = EventStreamDecoder()
        self._failed = False
        self.usage: Usage | None = None
        self.produced = 0
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self._failed:
            return chunk
        try:
            for message in self._decoder.feed(chunk):
                if message.message_type != "event":
                    self.error = stream_exception(message.event_type, message.payload).message
                elif message.event_type == "contentBlockDelta":
                    self.produced += 1
                elif message.event_type == "metadata":
                    usage = usage_from_converse((load_object(message.payload) or {}).get("usage"))
                    self.usage = usage or self.usage
        except EventStreamError as exc:  # relayed as it is: the client's SDK reports it too
            self._failed, self.error = True, f"the provider's event stream is corrupt: {exc}"
        return chunk

    def finish(self) -> bytes:
        if not self._failed and self._decoder.pending and self.error is None:
            self.error = "the provider's event stream ended inside a message"
        return b""

    def error_event(self, message: str) -> bytes:
        return converse_stream_error(502, message)


CONVERSE = ConverseSide()
CHAT_VIA_CONVERSE = chat_via(CONVERSE)
MESSAGES_VIA_CONVERSE = messages_via(CONVERSE)


def responses_via_converse(provider: str) -> ViaChat:
    """The Responses API's exchange for the Bedrock provider named ``provider``."""
    return responses_via(CONVERSE, provider)
