"""Exchanges with a Gemini provider: each client API reaches `generateContent` through
chat completions, the internal form (client API → chat → Gemini, and back), and Google's
own API passes through.

The Gemini adapter's translators (`tollway.providers.adapters.gemini_request` and
`gemini_response`) are the only Gemini-specific parts; the client side of each exchange
reuses the translators every other provider uses (messages ↔ chat, responses ↔ chat).
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.providers._chat_response_to_responses import chat_response_to_responses
from tollway.providers._chat_stream_to_responses import ChatStreamToResponses
from tollway.providers._responses_request_to_chat import responses_request_to_chat
from tollway.providers._translate_common import TranslationError
from tollway.providers.adapters.gemini_request import chat_request_to_gemini
from tollway.providers.adapters.gemini_response import (
    GeminiStreamToChat,
    gemini_error_to_anthropic,
    gemini_error_to_openai,
    gemini_response_to_chat,
    google_error_from,
    usage_from_gemini,
)
from tollway.providers.anthropic_translate import ChatStreamToMessages, UpstreamStreamError, messages_request_to_chat
from tollway.providers.anthropic_translate import chat_response_to_messages as chat_to_messages
from tollway.providers.client import Api
from tollway.providers.sse import SSEParser, encode_event
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


def openai_error_from_gemini(status: int, data: bytes) -> bytes:
    return gemini_error_to_openai(status, data) or openai_error_from(status, data)


def anthropic_error_from_gemini(status: int, data: bytes) -> bytes:
    return gemini_error_to_anthropic(status, data) or anthropic_error_from(status, data)


class _ViaGemini:
    """The Gemini side of a translated exchange: the body sent is the client's request as
    chat (`_chat_request`), translated to `generateContent`."""

    upstream_api = Api.GENERATE_CONTENT

    def _chat_request(self, request: ClientRequest) -> dict[str, Any]:
        return request.body

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return chat_request_to_gemini(self._chat_request(request))

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def _chat_response(self, data: bytes, model: str) -> tuple[dict[str, Any], Usage | None] | None:
        body = load_object(data)
        if body is None:
            return None
        return gemini_response_to_chat(body, model), usage_from_gemini(body.get("usageMetadata"))


class ChatViaGemini(_ViaGemini):
    """OpenAI chat client, Gemini provider."""

    def response(self, data: bytes) -> tuple[bytes, Usage | None]:
        chat = self._chat_response(data, "")
        if chat is None:
            return openai_error_from(502, data), None
        return orjson.dumps(chat[0]), chat[1]

    def stream(self, request: ClientRequest) -> StreamConverter:
        return _GeminiStream(GeminiStreamToChat(request.model, request.wants_usage), _ChatOut())

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from_gemini(status, data)


class MessagesViaGemini(_ViaGemini):
    """Anthropic messages client, Gemini provider: messages → chat → Gemini, and back."""

    def _chat_request(self, request: ClientRequest) -> dict[str, Any]:
        return messages_request_to_chat(request.body)

    def response(self, data: bytes) -> tuple[bytes, Usage | None]:
        chat = self._chat_response(data, "")
        if chat is None:
            return anthropic_error_from(502, data), None
        return orjson.dumps(chat_to_messages(chat[0], chat[0]["model"])), chat[1]

    def stream(self, request: ClientRequest) -> StreamConverter:
        return _GeminiStream(GeminiStreamToChat(request.model, True), _MessagesOut(request.model))

    def error(self, status: int, data: bytes) -> bytes:
        return anthropic_error_from_gemini(status, data)


class ResponsesViaGemini(_ViaGemini):
    """Responses client, Gemini provider: Responses → chat → Gemini, and back."""

    def __init__(self, provider: str) -> None:
        self._provider = provider

    def _chat_request(self, request: ClientRequest) -> dict[str, Any]:
        return responses_request_to_chat(request.body, self._provider)

    def response(self, data: bytes) -> tuple[bytes, Usage | None]:
        chat = self._chat_response(data, "")
        if chat is None:
            return openai_error_from(502, data), None
        return orjson.dumps(chat_response_to_responses(chat[0], chat[0]["model"])), chat[1]

    def stream(self, request: ClientRequest) -> StreamConverter:
        return _GeminiStream(GeminiStreamToChat(request.model, True), _ResponsesOut(request.model))

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from_gemini(status, data)


class CountTokensViaGemini(_ViaGemini):
    """Anthropic `count_tokens` client, Gemini provider: Gemini's `countTokens` counts the
    request as it would be sent (messages → chat → Gemini, system and tools included)."""

    upstream_api = Api.GEMINI_COUNT_TOKENS

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        body = chat_request_to_gemini(messages_request_to_chat(request.body))
        body.pop("generationConfig", None)
        return {"generateContentRequest": {"model": "models/" + model, **body}}

    def response(self, data: bytes) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        total = (body or {}).get("totalTokens")
        if not isinstance(total, int):
            return anthropic_error_from(502, data), None
        return orjson.dumps({"input_tokens": total}), None  # counted, never charged

    def stream(self, request: ClientRequest) -> StreamConverter:
        raise NotImplementedError  # counting is never streamed

    def error(self, status: int, data: bytes) -> bytes:
        return anthropic_error_from_gemini(status, data)


class EmbeddingsViaGemini:
    """OpenAI embeddings client, Gemini provider: one input → `embedContent`."""

    upstream_api = Api.EMBED_CONTENT

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        text = request.body.get("input")
        if isinstance(text, list) and len(text) == 1 and isinstance(text[0], str):
            text = text[0]
        if not isinstance(text, str):
            raise TranslationError("a Gemini model embeds one text per request: 'input' must be a string",
                                   field="input")
        body: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
        if request.body.get("dimensions") is not None:
            body["outputDimensionality"] = request.body["dimensions"]
        return body

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        values = ((body or {}).get("embedding") or {}).get("values")
        if not isinstance(values, list):
            return openai_error_from(502, data), None
        out = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": values}], "model": "",
               "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        return orjson.dumps(out), None  # Gemini reports no usage for embeddings: the estimate is charged

    def stream(self, request: ClientRequest) -> StreamConverter:
        raise NotImplementedError  # embeddings are never streamed

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from_gemini(status, data)


class GeminiPassthrough:
    """Google client (the gateway's `/v1beta/models/{model}:generateContent`), Gemini provider."""

    upstream_api = Api.GENERATE_CONTENT

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return {name: value for name, value in request.body.items() if name not in ("model", "stream")}

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        return data, usage_from_gemini(body.get("usageMetadata")) if body else None

    def stream(self, request: ClientRequest) -> StreamConverter:
        return _GeminiRelay()

    def error(self, status: int, data: bytes) -> bytes:
        return google_error_from(status, data)


class _ChatOut:
    """Chat chunks as an OpenAI chat stream."""

    def feed(self, chunk: dict[str, Any]) -> bytes:
        return encode_event(orjson.dumps(chunk))

    def finish(self) -> bytes:
        return _DONE

    def error(self, error: UpstreamStreamError) -> bytes:
        return encode_event(orjson.dumps(error.openai_body()))

    def error_event(self, message: str) -> bytes:
        return openai_stream_error(message)


class _MessagesOut:
    """Chat chunks as Anthropic message events."""

    def __init__(self, model: str) -> None:
        self._translator = ChatStreamToMessages(model)

    def feed(self, chunk: dict[str, Any]) -> bytes:
        return b"".join(encode_event(orjson.dumps(data), name) for name, data in self._translator.feed(chunk))

    def finish(self) -> bytes:
        return b"".join(encode_event(orjson.dumps(data), name) for name, data in self._translator.finish())

    def error(self, error: UpstreamStreamError) -> bytes:
        return encode_event(orjson.dumps(error.anthropic_body()), "error")

    def error_event(self, message: str) -> bytes:
        return anthropic_stream_error(message)


class _ResponsesOut:
    """Chat chunks as Responses API events."""

    def __init__(self, model: str) -> None:
        self._translator = ChatStreamToResponses(model)

    def feed(self, chunk: dict[str, Any]) -> bytes:
        return b"".join(encode_event(orjson.dumps(data), name) for name, data in self._translator.feed(chunk))

    def finish(self) -> bytes:
        return b"".join(encode_event(orjson.dumps(data), name) for name, data in self._translator.finish())

    def error(self, error: UpstreamStreamError) -> bytes:
        name, data = self._translator.error_event(error.error_type, error.message)
        return encode_event(orjson.dumps(data), name)

    def error_event(self, message: str) -> bytes:
        name, data = self._translator.error_event("stream_interrupted", message)
        return encode_event(orjson.dumps(data), name)


class _GeminiStream:
    """A Gemini SSE stream, translated to chat chunks, written in the client's API."""

    def __init__(self, gemini: GeminiStreamToChat, out: _ChatOut | _MessagesOut | _ResponsesOut) -> None:
        self._parser = SSEParser()
        self._gemini = gemini
        self._out = out
        self._failed = False
        self.usage: Usage | None = None  # the usage so far (each Gemini chunk carries it)
        self.produced = 0
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._parser.feed(chunk):
            data = load_object(event.data) if event.data and not self._failed else None
            if data is None:
                continue
            try:
                chat_chunks = self._gemini.feed(data)
            except UpstreamStreamError as exc:
                self._failed, self.error = True, exc.message
                out.append(self._out.error(exc))
                continue
            self.produced += len(chat_chunks)
            out.extend(self._out.feed(chat_chunk) for chat_chunk in chat_chunks)
        self.usage = self._gemini.usage
        return b"".join(out)

    def finish(self) -> bytes:
        if self._failed:
            return b""
        return b"".join(self._out.feed(chunk) for chunk in self._gemini.finish()) + self._out.finish()

    def error_event(self, message: str) -> bytes:
        return self._out.error_event(message)


class _GeminiRelay:
    """Relays Gemini's SSE unchanged to a Google client; the usage so far rides on each chunk."""

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.usage: Usage | None = None
        self.produced = 0
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        for event in self._parser.feed(chunk):
            body = load_object(event.data) if event.data else None
            if body is None:
                continue
            if isinstance(body.get("error"), dict):
                self.error = str(body["error"].get("message") or "upstream stream error")
            usage = usage_from_gemini(body.get("usageMetadata"))
            if usage is not None:
                self.usage = usage
            if body.get("candidates"):
                self.produced += 1
        return chunk

    def finish(self) -> bytes:
        return b""

    def error_event(self, message: str) -> bytes:
        return encode_event(google_error_from(502, orjson.dumps({"error": {"message": message,
                                                                            "code": "stream_interrupted"}})))
