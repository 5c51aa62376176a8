"""How a client's API maps onto a provider's: request bodies, responses, streams, errors.

When both speak the same API the upstream bytes pass through as they are and usage is
read on the side; otherwise `tollway.proxy.translated` converts both ways.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

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

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        """The client's answer and the usage it reports. ``model`` is the model the provider
        was asked for (the target's, as `upstream_body` got it): named in a translated answer
        whose provider does not name the model (Bedrock's Converse, InvokeModel). Passed in,
        not kept: exchanges are shared by every request, so the hot path allocates nothing."""
        ...

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        """The converter of one streamed answer; ``model`` as for `response`."""
        ...

    def error(self, status: int, data: bytes) -> bytes: ...


class LocalExchange:
    """An exchange the gateway answers itself, without calling the provider (governed like
    the others: admitted, logged, charged nothing). ``headers`` go on the answer."""

    upstream_api: Api
    headers: ClassVar[list[tuple[bytes, bytes]]] = []

    def answer(self, request: ClientRequest) -> bytes:
        raise NotImplementedError

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        raise NotImplementedError  # never called: the pipeline answers with `answer`

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return dict(request.body)  # what the worst case is read from (nothing is sent)

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        raise NotImplementedError

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        raise NotImplementedError

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from(status, data)


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

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        return data, usage_from_openai(body.get("usage")) if body else None

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
        return _OpenAIStream(strip_usage=not request.wants_usage)

    def error(self, status: int, data: bytes) -> bytes:
        return openai_error_from(status, data)


class _OpenAIStream:
    """Relays an OpenAI stream as the provider's bytes, cut only at event boundaries.

    When the gateway asked for the usage chunk on the client's behalf, that one event is
    taken out and every other byte passes unchanged. Output is released only up to the end
    of the last complete event, and the partial event after it is held for the next chunk:
    an event is never sent in two halves of which only one could be taken back. (Passing
    the raw chunk through while re-encoding the events of another chunk sent the head of
    a split event twice — once raw, once whole — and corrupted about 1 % of streams.)
    """

    def __init__(self, strip_usage: bool) -> None:
        self._held = b""  # the start of an event whose end has not arrived
        self._strip = strip_usage
        self.usage: Usage | None = None
        self.produced = 0
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk if self._held else chunk
        if b"\r" in data:  # rare: normalise line ends (a final \r may pair with the next chunk's \n)
            data = _normalise_line_ends(data)
        end = data.rfind(b"\n\n") + 2
        if end < 2:
            self._held = data
            return b""
        self._held = data[end:]
        return self._events(data[:end], b"\n\n")

    def finish(self) -> bytes:
        """A last event whose blank line never came is relayed too (lenient, like the parser's flush)."""
        held, self._held = self._held, b""
        return self._events(held, b"") if held.strip() else held

    def _events(self, data: bytes, tail: bytes) -> bytes:
        """``data`` (whole events, the last ending in ``tail``) less a stripped usage chunk."""
        blocks = data[: len(data) - len(tail)].split(b"\n\n") if tail else [data]
        stripped = False
        for index, block in enumerate(blocks):
            if b'"usage":{' in block or b'"usage": {' in block:
                body = load_object(_data_of(block))
                if body is not None and body.get("usage"):
                    self.usage = usage_from_openai(body["usage"])
                    if self._strip and not body.get("choices"):
                        blocks[index] = b""
                        stripped = True
                        continue
            if block.startswith(b"data:") and not block.endswith(b"[DONE]"):
                self.produced += 1
        if not stripped:
            return data
        return b"".join(block + tail for block in blocks if block)

    def error_event(self, message: str) -> bytes:
        return openai_stream_error(message)


def _normalise_line_ends(data: bytes) -> bytes:
    """\r\n and \r as \n; a final \r is kept as it is, since its \n may start the next chunk."""
    last_cr = data.endswith(b"\r")
    body = (data[:-1] if last_cr else data).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return body + b"\r" if last_cr else body


def _data_of(block: bytes) -> bytes:
    """The data of one event block (its data lines joined), tolerant of comments and other fields."""
    if block.startswith(b"data: ") and b"\n" not in block:
        return block[6:]
    lines = [line[5:] for line in block.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(line[1:] if line.startswith(b" ") else line for line in lines)


class AnthropicPassthrough:
    """Anthropic client, Anthropic provider."""

    upstream_api = Api.MESSAGES

    def request_body(self, request: ClientRequest, model: str) -> bytes:
        return orjson.dumps(_with_model(request, model))

    def upstream_body(self, request: ClientRequest, model: str) -> dict[str, Any]:
        return _with_model(request, model)

    def response(self, data: bytes, model: str) -> tuple[bytes, Usage | None]:
        body = load_object(data)
        return data, usage_from_anthropic(body.get("usage")) if body else None

    def stream(self, request: ClientRequest, model: str) -> StreamConverter:
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
