"""Exchanges between different APIs: an OpenAI client on an Anthropic model, and an
Anthropic client on an OpenAI-compatible model, streaming included."""

from __future__ import annotations

from typing import Any

import orjson

from tollway.providers.anthropic_translate import (
    ChatStreamToMessages,
    MessagesStreamToChat,
    UpstreamStreamError,
    chat_request_to_messages,
    chat_response_to_messages,
    messages_request_to_chat,
    messages_response_to_chat,
)
from tollway.providers.client import Api
from tollway.providers.sse import SSEParser, encode_event
from tollway.providers.usage_extract import usage_from_anthropic, usage_from_openai
from tollway.proxy.passthrough import (
    StreamConverter,
    anthropic_error_from,
    anthropic_stream_error,
    load_object,
    openai_error_from,
    openai_stream_error,
)
from tollway.proxy.request import ClientRequest
from tollway.usage import Usage

_DONE = b"data: [DONE]\n\n"


class ChatViaMessages:
    """OpenAI chat client, Anthropic provider."""

    upstream_api = Api.MESSAGES

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return chat_request_to_messages(request.body, model)

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        if body is None:
            return openai_error_from(502, data), None
        return orjson.dumps(messages_response_to_chat(body, body.get("model") or model)), usage_from_anthropic(body.get("usage"))

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        # ``model`` is reported only until message_start names the answering model.
        return _MessagesToChatStream(MessagesStreamToChat(model, request.wants_usage))

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from(status, data)


class MessagesViaChat:
    """Anthropic messages client, OpenAI-compatible provider."""

    upstream_api = Api.CHAT

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        body = messages_request_to_chat(request.body)
        body["model"] = model
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        if body is None:
            return anthropic_error_from(502, data), None
        return orjson.dumps(chat_response_to_messages(body, body.get("model") or model)), usage_from_openai(body.get("usage"))

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        return _ChatToMessagesStream(ChatStreamToMessages(model))

    def error(self, status: int, data: bytes) -> bytes:
        return anthropic_error_from(status, data)


class _TranslatedStream:
    """Parses the upstream's SSE, hands each event to a translator, encodes what it
    returns; an error the upstream sends mid-stream ends the translation with an error
    event in the client's shape."""

    def __init__(self, translator: MessagesStreamToChat | ChatStreamToMessages) -> None:
        self._translator = translator
        self._parser = SSEParser()
        self._failed = False
        self.produced = 0
        self.error: str | None = None

    @property
    def usage(self) -> Usage | None:
        """What the translator has read of the upstream's usage."""
        return self._translator.usage

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._parser.feed(chunk):
            if self._failed or not event.data or event.data == b"[DONE]":
                continue
            data = load_object(event.data)
            if data is None:
                continue
            try:
                out.extend(self._translate(event.event, data))
            except UpstreamStreamError as exc:
                self._failed, self.error = True, exc.message
                out.append(self._error(exc))
        return b"".join(out)

    def _translate(self, event: str | None, data: dict[str, Any]) -> list[bytes]:
        raise NotImplementedError

    def _error(self, error: UpstreamStreamError) -> bytes:
        raise NotImplementedError


class _MessagesToChatStream(_TranslatedStream):
    _translator: MessagesStreamToChat

    def _translate(self, event: str | None, data: dict[str, Any]) -> list[bytes]:
        if event == "content_block_delta":
            self.produced += 1
        return [encode_event(orjson.dumps(chunk)) for chunk in self._translator.feed(event or data.get("type"), data)]

    def _error(self, error: UpstreamStreamError) -> bytes:
        return encode_event(orjson.dumps(error.openai_body()))

    def finish(self) -> bytes:
        return _DONE

    def error_event(self, message: str) -> bytes:
        return openai_stream_error(message)


class _ChatToMessagesStream(_TranslatedStream):
    _translator: ChatStreamToMessages

    def _translate(self, event: str | None, data: dict[str, Any]) -> list[bytes]:
        if data.get("choices"):
            self.produced += 1
        return _encode(self._translator.feed(data))

    def _error(self, error: UpstreamStreamError) -> bytes:
        return encode_event(orjson.dumps(error.anthropic_body()), "error")

    def finish(self) -> bytes:
        return b"" if self._failed else b"".join(_encode(self._translator.finish()))

    def error_event(self, message: str) -> bytes:
        return anthropic_stream_error(message)


def _encode(events: list[tuple[str, Any]]) -> list[bytes]:
    return [encode_event(orjson.dumps(data), name) for name, data in events]
