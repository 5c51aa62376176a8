"""Exchanges with a Gemini provider (and Vertex AI's Gemini models): each chat-shaped
client API reaches `generateContent` through chat completions, the internal form, with the
generic exchange of `tollway.proxy.via_chat` over `GeminiSide` (the adapter's translators,
`tollway.providers.adapters.gemini_request` and `gemini_response`, and its SSE decoding);
counting, embeddings and Google's own API have exchanges of their own.
"""

from __future__ import annotations

from typing import Any

import orjson

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
from tollway.providers.anthropic_translate import UpstreamStreamError, messages_request_to_chat
from tollway.providers.client import Api
from tollway.providers.sse import SSEParser, encode_event
from tollway.proxy.client_sides import ProviderErrors, StreamOut
from tollway.proxy.passthrough import StreamConverter, load_object
from tollway.proxy.request import ClientRequest
from tollway.proxy.via_chat import ViaChat, chat_via, messages_via, responses_via
from tollway.usage import Usage

GEMINI_ERRORS = ProviderErrors(gemini_error_to_openai, gemini_error_to_anthropic)


def openai_error_from_gemini(status: int, data: bytes) -> bytes:
    return GEMINI_ERRORS.openai(status, data)


def anthropic_error_from_gemini(status: int, data: bytes) -> bytes:
    return GEMINI_ERRORS.anthropic(status, data)


class GeminiSide:
    """Gemini's `generateContent` seen from chat: the adapter's translators and its SSE."""

    upstream_api = Api.GENERATE_CONTENT
    errors = GEMINI_ERRORS

    def from_chat(self, chat: dict[str, Any], model: str) -> dict[str, Any]:
        return chat_request_to_gemini(chat)

    def to_chat(self, data: bytes, model: str) -> tuple[dict[str, Any], Usage | None]:
        body = load_object(data)
        if body is None:  # a 502 naming the provider
            raise TranslationError("the generateContent answer is not a JSON object")
        # ``model`` is named where the answer gives no modelVersion.
        return gemini_response_to_chat(body, model), usage_from_gemini(body.get("usageMetadata"))

    def stream(self, model: str, wants_usage: bool, out: StreamOut) -> StreamConverter:
        return _GeminiStream(GeminiStreamToChat(model, wants_usage), out)


GEMINI = GeminiSide()
CHAT_VIA_GEMINI = chat_via(GEMINI)
MESSAGES_VIA_GEMINI = messages_via(GEMINI)


def responses_via_gemini(provider: str) -> ViaChat:
    """The Responses API's exchange for the Gemini (or Vertex AI) provider named ``provider``."""
    return responses_via(GEMINI, provider)


class CountTokensViaGemini:
    """Anthropic `count_tokens` client, Gemini provider: Gemini's `countTokens` counts the
    request as it would be sent (messages → chat → Gemini, system and tools included)."""

    upstream_api = Api.GEMINI_COUNT_TOKENS

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        body = chat_request_to_gemini(messages_request_to_chat(request.body))
        body.pop("generationConfig", None)
        return {"generateContentRequest": {"model": "models/" + model, **body}}

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        total = (body or {}).get("totalTokens")
        if not isinstance(total, int):
            raise TranslationError("the countTokens answer holds no totalTokens")  # a 502 naming the provider
        return orjson.dumps({"input_tokens": total}), None  # counted, never charged

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
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

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        values = ((body or {}).get("embedding") or {}).get("values")
        if not isinstance(values, list):
            raise TranslationError("the embedContent answer holds no embedding")  # a 502 naming the provider
        out = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": values}], "model": model,
               "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        return orjson.dumps(out), None  # Gemini reports no usage for embeddings: the estimate is charged

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
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

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        return data, usage_from_gemini(body.get("usageMetadata")) if body else None

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        return _GeminiRelay()

    def error(self, status: int, data: bytes) -> bytes:
        return google_error_from(status, data)


class _GeminiStream:
    """A Gemini SSE stream, translated to chat chunks, written in the client's API."""

    def __init__(self, gemini: GeminiStreamToChat, out: StreamOut) -> None:
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
