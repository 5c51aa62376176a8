"""Exchanges of the Responses API (`POST /v1/responses`): passed through to providers that
serve it (OpenAI, Azure OpenAI), translated through chat completions for the others
(OpenAI-compatible servers with `responses_api: false`, and Anthropic via messages)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from tollway.errors import bad_request
from tollway.providers._chat_response_to_responses import chat_response_to_responses
from tollway.providers._chat_stream_to_responses import ChatStreamToResponses, Event
from tollway.providers._responses_request_to_chat import responses_request_to_chat
from tollway.providers.anthropic_translate import (
    MessagesStreamToChat,
    UpstreamStreamError,
    chat_request_to_messages,
    messages_response_to_chat,
)
from tollway.providers.client import Api, ProviderClient
from tollway.providers.sse import SSEParser, encode_event
from tollway.providers.usage_extract import (
    usage_from_anthropic,
    usage_from_openai,
    usage_from_responses,
)
from tollway.proxy.bedrock_exchanges import responses_via_converse
from tollway.proxy.gemini_exchanges import responses_via_gemini
from tollway.proxy.passthrough import (
    Exchange,
    StreamConverter,
    _data_of,
    _OpenAIStream,
    load_object,
    openai_error_from,
)
from tollway.proxy.request import ClientRequest
from tollway.proxy.token_count import EstimatedResponseTokens
from tollway.usage import Usage


def responses_exchange(provider: ProviderClient, api: Api = Api.RESPONSES) -> Exchange:
    """How `/v1/responses` (or `/v1/responses/input_tokens`) reaches ``provider``: built on
    its first request, then kept on it."""
    exchange: Exchange | None = provider.exchanges.get(api)
    if exchange is None:
        exchange = provider.exchanges[api] = (_responses_exchange(provider) if api is Api.RESPONSES
                                              else _input_tokens_exchange(provider))
    return exchange


def _input_tokens_exchange(provider: ProviderClient) -> Exchange:
    if passes_through(provider):
        return ResponsesPassthrough(provider.upstream_model, Api.RESPONSES_INPUT_TOKENS)
    return EstimatedResponseTokens()


def _responses_exchange(provider: ProviderClient) -> Exchange:
    upstream = provider.upstream_api(Api.RESPONSES)
    if upstream is Api.RESPONSES:
        return ResponsesPassthrough(provider.upstream_model)
    return translated_responses(provider, upstream)


def translated_responses(provider: ProviderClient, upstream: Api) -> Exchange:
    """The Responses API translated to the provider API ``upstream`` (chat, messages, Gemini)."""
    translated = _TRANSLATED.get(upstream)
    if translated is None:
        raise bad_request(f"provider {provider.name!r} ({provider.type}) does not serve the responses API")
    return translated(provider.name)


def passes_through(provider: ProviderClient) -> bool:
    """Whether the provider itself serves (and stores) the Responses API."""
    return isinstance(responses_exchange(provider), ResponsesPassthrough)


class ResponsesPassthrough:
    """Responses client, a provider that serves the Responses API: the bytes pass as they are."""

    def __init__(self, upstream_model: Callable[[str], str], api: Api = Api.RESPONSES) -> None:
        self._upstream_model = upstream_model  # Azure: the deployment goes in the body's model
        self.upstream_api = api

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        body = dict(request.body)
        body["model"] = self._upstream_model(model)
        return body

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        return data, usage_from_responses(body.get("usage")) if body else None

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        return _ResponsesStream()

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from(status, data)


class _ResponsesStream(_OpenAIStream):
    """Relays the provider's typed events unchanged, cut only at event boundaries (as
    `_OpenAIStream` does); usage comes from the final response event."""

    def __init__(self) -> None:
        super().__init__(strip_usage=False)
        self._events_seen = 0

    def _events(self, data: bytes, tail: bytes) -> bytes:
        for block in data.split(b"\n\n"):
            if not block.strip():
                continue
            self._events_seen += 1
            head = block[:64]
            if b"_text.delta" in head or b"arguments.delta" in head:
                self.produced += 1
            elif b"response.completed" in head or b"response.incomplete" in head or b"response.failed" in head:
                self._note_final(block)
            elif head.startswith(b"event: error") or b'"type":"error"' in block[:200]:
                body = load_object(_data_of(block)) or {}
                self.error = str(body.get("message") or "the upstream reported an error mid-stream")
        return data

    def _note_final(self, block: bytes) -> None:
        body = load_object(_data_of(block))
        response = body.get("response") if body else None
        if not isinstance(response, dict):
            return
        self.usage = usage_from_responses(response.get("usage")) or self.usage
        if response.get("status") == "failed":
            error = response.get("error") or {}
            self.error = str(error.get("message") if isinstance(error, dict) else error) or "the response failed"

    def error_event(self, message: str) -> bytes:
        payload = {"type": "error", "sequence_number": self._events_seen, "code": "stream_interrupted",
                   "message": message, "param": None}
        return encode_event(orjson.dumps(payload), "error")


class ResponsesViaChat:
    """Responses client, an OpenAI-compatible provider with chat completions only."""

    upstream_api = Api.CHAT

    def __init__(self, provider: str) -> None:
        self._provider = provider

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        body = responses_request_to_chat(request.body, self._provider)
        body["model"] = model
        return body

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        if body is None:
            return openai_error_from(502, data), None
        return orjson.dumps(chat_response_to_responses(body, body.get("model") or model)), usage_from_openai(body.get("usage"))

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        return _TranslatedResponsesStream(model, None)

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from(status, data)


class ResponsesViaMessages:
    """Responses client, Anthropic provider: Responses → chat → messages, and back."""

    upstream_api = Api.MESSAGES

    def __init__(self, provider: str) -> None:
        self._provider = provider

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return chat_request_to_messages(responses_request_to_chat(request.body, self._provider), model)

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        if body is None:
            return openai_error_from(502, data), None
        named = body.get("model") or model
        chat = messages_response_to_chat(body, named)
        return orjson.dumps(chat_response_to_responses(chat, named)), usage_from_anthropic(body.get("usage"))

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        return _TranslatedResponsesStream(model, MessagesStreamToChat(model, True))

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from(status, data)


# How the Responses API reaches a provider that does not serve it, by the API the
# provider's adapter translates through.
_TRANSLATED: dict[Api, Callable[[str], Exchange]] = {Api.CHAT: ResponsesViaChat, Api.MESSAGES: ResponsesViaMessages,
                                                     Api.GENERATE_CONTENT: responses_via_gemini,
                                                     Api.CONVERSE: responses_via_converse}


class _TranslatedResponsesStream:
    """Parses the upstream's SSE (chat chunks, or Anthropic events turned into chat chunks
    first) and encodes the Responses events `ChatStreamToResponses` makes of them."""

    def __init__(self, model: str, messages: MessagesStreamToChat | None) -> None:
        self._parser = SSEParser()
        self._messages = messages
        self._out = ChatStreamToResponses(model)
        self._failed = False
        self.produced = 0
        self.error: str | None = None

    @property
    def usage(self) -> Usage | None:
        return self._messages.usage if self._messages is not None else self._out.usage

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._parser.feed(chunk):
            if self._failed or not event.data or event.data == b"[DONE]":
                continue
            data = load_object(event.data)
            if data is None:
                continue
            try:
                for chat_chunk in self._chat_chunks(event.event, data):
                    out.extend(_encode(self._out.feed(chat_chunk)))
            except UpstreamStreamError as exc:
                self._failed, self.error = True, exc.message
                out.append(_encode_one(self._out.error_event(exc.error_type, exc.message)))
        return b"".join(out)

    def _chat_chunks(self, event: str | None, data: dict[str, Any]) -> list[dict[str, Any]]:
        if self._messages is None:
            if data.get("choices"):
                self.produced += 1
            return [data]
        if event == "content_block_delta":
            self.produced += 1
        return self._messages.feed(event or data.get("type"), data)

    def finish(self) -> bytes:
        return b"" if self._failed else b"".join(_encode(self._out.finish()))

    def error_event(self, message: str) -> bytes:
        return _encode_one(self._out.error_event("stream_interrupted", message))


def _encode(events: list[Event]) -> list[bytes]:
    return [_encode_one(event) for event in events]


def _encode_one(event: Event) -> bytes:
    return encode_event(orjson.dumps(event[1]), event[0])
