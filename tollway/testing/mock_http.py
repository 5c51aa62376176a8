"""HTTP plumbing shared by the mock's API routes: receiving and recording a request,
applying queued faults and latency, sending JSON or SSE, error bodies in each API's shape,
and counting client disconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from tollway.testing.mock_state import Fault, MockState

Flavor = Literal["openai", "anthropic", "gemini", "bedrock"]
"""Which API's error shape a route answers with."""

STATE_KEY: web.AppKey[MockState] = web.AppKey("tollway_mock_state", MockState)

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_OPENAI_FAULT_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_FAULT_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

_GOOGLE_STATUS: dict[int, str] = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                                  404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
                                  504: "DEADLINE_EXCEEDED"}
_AWS_ERRORS: dict[int, str] = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                               408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
                               500: "InternalServerException", 503: "ServiceUnavailableException"}


@dataclass(slots=True)
class MockCall:
    """One received API request, as a route handler sees it."""

    request: web.Request
    state: MockState
    body: Any
    """The parsed JSON body, or None when there was none or it was not JSON."""
    body_invalid: bool
    """A body was sent but it is not valid JSON."""
    fault: Fault | None
    record: dict[str, Any]
    """This request's entry in the mock's request log."""
    raw: bytes = b""
    """The body as received (multipart uploads are parsed from it)."""

    @property
    def drop_after(self) -> int | None:
        """Stream events to send before aborting, when a `mid_stream` fault applies."""
        fault = self.fault
        return fault.after_chunks if fault is not None and fault.drop == "mid_stream" else None

    def header(self, name: str) -> str:
        """A request header, or "" when absent."""
        return self.request.headers.get(name, "")


Handler = Callable[[MockCall], Awaitable[web.StreamResponse]]


def endpoint(handler: Handler, flavor: Flavor) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap an API route: count and record the request, apply a fault and latency, run `handler`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        stats = state.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            call = await _receive(request, state)
            return await _answer(call, handler, flavor)
        except ConnectionResetError:
            stats.requests_cancelled += 1
            return web.Response()  # never sent: the client is gone
        except asyncio.CancelledError:
            stats.requests_cancelled += 1
            raise
        finally:
            stats.in_flight -= 1

    return handle


async def _receive(request: web.Request, state: MockState) -> MockCall:
    raw = await request.read() if request.body_exists else b""
    body: Any = None
    invalid = False
    if raw and not request.content_type.startswith("multipart/"):
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            invalid = True
    record = {
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "headers": {name.lower(): value for name, value in request.headers.items()},
        "body": body,
    }
    state.requests.append(record)
    fault = state.take_fault(request.path) if state.faults else None
    return MockCall(request, state, body, invalid, fault, record, raw)


async def _answer(call: MockCall, handler: Handler, flavor: Flavor) -> web.StreamResponse:
    fault = call.fault
    delay_ms = call.state.settings.latency_ms + (fault.delay_ms if fault is not None else 0.0)
    if delay_ms > 0:
        await asyncio.sleep(delay_ms / 1000)
    if fault is not None and fault.drop == "before_response":
        _abort(call.request)
        return web.Response()  # never sent: the connection is gone
    if fault is not None and fault.status is not None:
        return _fault_response(fault, flavor)
    return await handler(call)


def _abort(request: web.Request) -> None:
    """Close the TCP connection at once (no clean end); aiohttp then fails quietly to finish the response."""
    if request.transport is not None:
        request.transport.abort()


def _fault_response(fault: Fault, flavor: Flavor) -> web.Response:
    headers = {"retry-after": _retry_after(fault.retry_after)} if fault.retry_after is not None else None
    if fault.body is None:
        return error_response(flavor, fault.status or 500, f"mock fault: HTTP {fault.status}", headers=headers)
    if isinstance(fault.body, str):
        return web.Response(status=fault.status or 500, text=fault.body, headers=headers)
    return web.Response(status=fault.status or 500, body=orjson.dumps(fault.body),
                        content_type="application/json", headers=headers)


def _retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def error_response(flavor: Flavor, status: int, message: str, type_: str | None = None, *,
                   param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """An error in the real shape of the `flavor` API; the type defaults from the status."""
    if flavor == "bedrock":  # AWS: the error type in a header, the body only {"message"}
        kind = _AWS_ERRORS.get(status, "InternalServerException" if status >= 500 else "ValidationException")
        return web.Response(status=status, body=orjson.dumps({"message": message}), content_type="application/json",
                            headers={**(headers or {}), "x-amzn-ErrorType": kind})
    if flavor == "gemini":
        payload: dict[str, Any] = {"error": {"code": status, "message": message, "status": _GOOGLE_STATUS.get(
            status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")}}
    elif flavor == "anthropic":
        error_type = type_ or _ANTHROPIC_FAULT_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        payload = {"type": "error", "error": {"type": error_type, "message": message}}
    else:
        default_type, default_code = _OPENAI_FAULT_ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None))
        payload = {"error": {"message": message, "type": type_ or default_type, "param": param,
                             "code": code if code is not None else default_code}}
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers)


async def send_json(call: MockCall, payload: Any, headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Send a 200 JSON body; a `mid_stream` fault sends half of it and then aborts."""
    body = orjson.dumps(payload)
    if call.drop_after is None:
        return web.Response(body=body, content_type="application/json", headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/json"
    response.content_length = len(body)
    await response.prepare(call.request)
    await response.write(body[: len(body) // 2])
    _abort(call.request)
    return response


async def send_sse(call: MockCall, events: Iterable[bytes], headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Stream pre-encoded SSE events, honouring chunk delay, splitting, `mid_stream` faults and disconnects."""
    stats = call.state.stats
    stats.streams_started += 1
    response = web.StreamResponse(headers={**_SSE_HEADERS, **headers} if headers else _SSE_HEADERS)
    drop_after = call.drop_after
    settings = call.state.settings
    delay_s = settings.chunk_delay_ms / 1000
    sent: list[bytes] | None = [] if settings.record_streams else None
    splitter = _Splitter(call.state) if settings.stream_split_max_bytes else None
    try:
        await response.prepare(call.request)
        for index, event in enumerate(events):
            if index == drop_after:
                _abort(call.request)
                return response
            if delay_s > 0 and index:
                await asyncio.sleep(delay_s)
            if splitter is not None:
                await splitter.write(response, event)
            else:
                await response.write(event)
            if sent is not None:
                sent.append(event)
        if drop_after is not None:
            _abort(call.request)
            return response
        if splitter is not None:
            await splitter.flush(response)
        await response.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        stats.streams_cancelled += 1
        raise
    finally:
        if sent is not None:
            call.record["stream"] = b"".join(sent).decode()
    stats.streams_completed += 1
    return response


class _Splitter:
    """Writes a stream in pieces cut at random offsets, with random pauses between them.

    Cuts ignore event boundaries (a piece may end one event and begin the next), and each
    piece is its own write, after a pause its own TCP segment on loopback: a reader sees
    events cut anywhere, mid-JSON, between the two bytes of a line end, inside a character.
    """

    def __init__(self, state: MockState) -> None:
        self._rng = state.rng
        self._max = state.settings.stream_split_max_bytes
        self._jitter_s = state.settings.stream_jitter_ms / 1000
        self._pending = b""
        self._next = self._rng.randint(1, self._max)

    async def write(self, response: web.StreamResponse, data: bytes) -> None:
        """Write the whole pieces ``data`` completes; keep the rest for the next call."""
        self._pending += data
        while len(self._pending) >= self._next:
            piece, self._pending = self._pending[:self._next], self._pending[self._next:]
            self._next = self._rng.randint(1, self._max)
            await self._send(response, piece)

    async def flush(self, response: web.StreamResponse) -> None:
        """Write what is left at the end of the stream."""
        if self._pending:
            piece, self._pending = self._pending, b""
            await self._send(response, piece)

    async def _send(self, response: web.StreamResponse, piece: bytes) -> None:
        if self._jitter_s > 0:
            await asyncio.sleep(self._rng.uniform(0, self._jitter_s))
        await response.write(piece)


def sse_data(payload: Any) -> bytes:
    """One OpenAI-style SSE event: `data: <json>`."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_event(name: bytes, payload: Any) -> bytes:
    """One Anthropic-style SSE event: `event: <name>` then `data: <json>`."""
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def bearer_token(call: MockCall) -> str:
    """The token of an `Authorization: Bearer ...` header, or ""."""
    value = call.header("Authorization")
    return value[7:].strip() if value[:7].lower() == "bearer " else ""
