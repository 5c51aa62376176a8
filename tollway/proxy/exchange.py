"""How a client's API maps onto a provider's: request bodies, responses, streams, errors.

When both speak the same API the upstream bytes pass through as they are and usage is
read on the side; otherwise `tollway.proxy.translated` converts both ways.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from tollway.providers.client import Api
from tollway.providers.sse import SSEParser, encode_event
from tollway.providers.usage_extract import usage_from_anthropic, usage_from_openai
from tollway.proxy.request import ClientRequest
from tollway.usage import Usage


class StreamConverter(Protocol):
    """Turns upstream SSE bytes into the client's SSE bytes, noting usage on the way."""

    usage: Usage | None
    produced: int  # content events relayed: a token each, roughly, for streams cut short
    error: str | None  # an error the upstream reported inside the stream

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    def error_event(self, message: str) -> bytes: ...


class Exchange(Protocol):
    upstream_api: Api

    def request_body(self, request: ClientRequest, model: str) -> bytes: ...

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        """The body sent upstream, before serialising: governance reads its worst case and
        strict enforcement may set its output cap (`tollway.proxy.worst_case`)."""
        ...

    def response(self, data: bytes) -> tuple[bytes, Usage | None]: ...

    def stream(self, request: ClientRequest) -> StreamConverter: ...

    def error(self, status: int, data: bytes) -> bytes: ...


def load_object(data: bytes) -> dict[str, Any] | None:
    """The JSON object in ``data``, or None for anything else."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def openai_stream_error(message: str) -> bytes:
    """The SSE event that ends an OpenAI-shaped stream the upstream broke off."""
    return encode_event(orjson.dumps({"error": {"message": message, "type": "upstream_error", "code": "stream_interrupted"}}))


def anthropic_stream_error(message: str) -> bytes:
    """The SSE event that ends an Anthropic-shaped stream the upstream broke off."""
    return encode_event(orjson.dumps({"type": "error", "error": {"type": "api_error", "message": message}}), "error")


def openai_error_from(status: int, data: bytes) -> bytes:
    """An upstream error body in OpenAI's shape, whatever shape it came in."""
    body = load_object(data)
    if body is not None and isinstance(body.get("error"), dict):
        error = body["error"]
        if body.get("type") == "error":  # Anthropic's shape
            return orjson.dumps({"error": {"message": error.get("message", ""), "type": error.get("type", "upstream_error"),
                                           "param": None, "code": error.get("type")}})
        return data
    text = data[:500].decode("utf-8", "replace") or f"upstream answered {status}"
    return orjson.dumps({"error": {"message": text, "type": "upstream_error", "param": None, "code": str(status)}})


def anthropic_error_from(status: int, data: bytes) -> bytes:
    """An upstream error body in Anthropic's shape, whatever shape it came in."""
    body = load_object(data)
    if body is not None and body.get("type") == "error":
        return data
    error = body.get("error") if body else None
    if isinstance(error, dict):
        return orjson.dumps({"type": "error", "error": {"type": error.get("type") or "api_error", "message": error.get("message", "")}})
    text = data[:500].decode("utf-8", "replace") or f"upstream answered {status}"
    return orjson.dumps({"type": "error", "error": {"type": "api_error", "message": text}})


def _with_model(request: ClientRequest, model: str) -> dict[str, Any]:
    body = dict(request.body)
    body["model"] = model
    return body


class OpenAIPassthrough:
    """OpenAI client, OpenAI-compatible provider."""

    def __init__(self, api: Api) -> None:
        self.upstream_api = api

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(self.upstream_body(request, model))

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        body = _with_model(request, model)
        if request.stream and not request.wants_usage and request.api is not Api.EMBEDDINGS:
            # Ask for the usage chunk so the stream can be charged; it is stripped again.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return body

    def response(self, data: bytes) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        return data, usage_from_openai(body.get("usage")) if body else None

    def stream(self, request: ClientRequest) -> StreamConverter:
        return _OpenAIStream(strip_usage=not request.wants_usage)

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from(status, data)


class _OpenAIStream:
    def __init__(self, strip_usage: bool) -> None:
        self._parser = SSEParser()
        self._strip = strip_usage
        self.usage: Usage | None = None
        self.produced = 0
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        events = self._parser.feed(chunk)
        dropped = False
        for event in events:
            data = event.data
            if b'"usage":{' in data or b'"usage": {' in data:
                body = load_object(data)
                if body is not None and body.get("usage"):
                    self.usage = usage_from_openai(body["usage"])
                    if self._strip and not body.get("choices"):
                        dropped = True
                        continue
            if data != b"[DONE]":
                self.produced += 1
        if not dropped:
            return chunk  # unchanged bytes: nothing to re-encode
        return b"".join(encode_event(e.data, e.event) for e in events if not _is_usage_only(e.data))

    def finish(self) -> bytes:
        return b""

    def error_event(self, message: str) -> bytes:
        return openai_stream_error(message)


def _is_usage_only(data: bytes) -> bool:
    if b'"usage"' not in data:
        return False
    body = load_object(data)
    return bool(body is not None and body.get("usage") and not body.get("choices"))


class AnthropicPassthrough:
    """Anthropic client, Anthropic provider."""

    upstream_api = Api.MESSAGES

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(_with_model(request, model))

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return _with_model(request, model)

    def response(self, data: bytes) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        return data, usage_from_anthropic(body.get("usage")) if body else None

    def stream(self, request: ClientRequest) -> StreamConverter:
        return _AnthropicStream()

    def error(self, status: int, data: bytes) -> bytes:
        return anthropic_error_from(status, data)


class _AnthropicStream:
    """Relays Anthropic's events unchanged; input tokens come in message_start,
    output tokens in message_delta."""

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._start: dict[str, Any] = {}
        self.usage: Usage | None = None
        self.produced = 0
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        for event in self._parser.feed(chunk):
            if event.event == "content_block_delta":
                self.produced += 1
            elif event.event in ("message_start", "message_delta"):
                self._note_usage(event.event, event.data)
        return chunk

    def _note_usage(self, name: str, data: bytes) -> None:
        body = load_object(data)
        if body is None:
            return
        if name == "message_start":
            self._start = dict((body.get("message") or {}).get("usage") or {})
            self.usage = usage_from_anthropic(self._start)
        else:
            self.usage = usage_from_anthropic({**self._start, **{k: v for k, v in (body.get("usage") or {}).items() if v is not None}})

    def finish(self) -> bytes:
        return b""

    def error_event(self, message: str) -> bytes:
        return anthropic_stream_error(message)
