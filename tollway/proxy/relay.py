"""Relaying an upstream SSE stream to the client, chunk by chunk.

The stream is pumped in its own task while another waits for the client to go away,
so a client that disconnects cancels the upstream read at once, even while the
upstream is silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from tollway.asgi import SSE_HEADERS, Headers, Receive, Send
from tollway.providers.http import UpstreamHTTPError, UpstreamResponse
from tollway.proxy.metering import StreamMeter
from tollway.proxy.passthrough import StreamConverter
from tollway.usage import Usage

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StreamResult:
    status: int  # 200 done, 499 client went away, 502 upstream broke mid-stream
    usage: Usage | None  # as reported by the upstream, when it got that far
    produced: int
    error: str | None = None

    def usage_or(self, estimate: tuple[int, int]) -> Usage:
        """What to charge: the reported usage of a finished stream, else what was produced."""
        if self.status == 200 and self.usage is not None:
            return self.usage
        prompt = self.usage.prompt_tokens if self.usage else estimate[0]
        completion = max(self.usage.completion_tokens if self.usage else 0, self.produced)
        return Usage(prompt_tokens=prompt, completion_tokens=completion)


class StreamCutOff(Exception):
    """The meter stopped the stream at a limit (see `tollway.proxy.metering`)."""


@dataclass(slots=True)
class Cutoff:
    """What a metered stream needs: the meter, and the client's end of a cut stream."""

    meter: StreamMeter
    end: Callable[[StreamMeter], bytes]


async def relay_stream(response: UpstreamResponse, converter: StreamConverter, headers: Headers,
                       receive: Receive, send: Send, cutoff: Cutoff | None = None,
                       stream_headers: Headers = SSE_HEADERS) -> StreamResult:
    """``stream_headers``: the stream's content type (SSE but for Bedrock's event stream)."""
    try:
        await send({"type": "http.response.start", "status": 200, "headers": stream_headers + headers})
    except BaseException:  # the client is gone already: drop the upstream, never leak its connection
        response.close()
        raise
    pump = asyncio.ensure_future(_pump(response, converter, send) if cutoff is None
                                 else _pump_metered(response, converter, send, cutoff.meter))
    watcher = asyncio.ensure_future(_until_disconnect(receive))
    try:
        await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled from outside (shutdown): drop the half-read upstream
        response.close()
        raise
    finally:
        watcher.cancel()
        if not pump.done():
            pump.cancel()
        try:
            await pump
        except BaseException:
            pass
    if cutoff is not None and not pump.cancelled() and isinstance(pump.exception(), StreamCutOff):
        return await _cut(response, converter, cutoff, send)
    return await _conclude(response, converter, pump, send)


async def _cut(response: UpstreamResponse, converter: StreamConverter, cutoff: Cutoff, send: Send) -> StreamResult:
    """End a stream the meter stopped: drop the upstream, send the client's end of stream."""
    response.close()  # drops the upstream connection: the provider stops generating
    meter = cutoff.meter
    try:
        await send({"type": "http.response.body", "body": cutoff.end(meter), "more_body": False})
    except OSError:
        pass
    prompt = converter.usage.prompt_tokens if converter.usage is not None else None
    usage = None if prompt is None else Usage(prompt_tokens=prompt, completion_tokens=meter.counted)
    limit = meter.denial.message if meter.denial is not None else "the reservation"
    return StreamResult(200, usage, meter.counted, f"stream cut off at a limit: {limit}")


async def _conclude(response: UpstreamResponse, converter: StreamConverter, pump: asyncio.Future, send: Send) -> StreamResult:
    if pump.cancelled():
        response.close()  # drops the upstream connection: the provider stops generating
        return StreamResult(499, converter.usage, converter.produced, "client disconnected mid-stream")
    error = pump.exception()
    if error is None:
        response.release()
        if converter.error is not None:
            return StreamResult(502, converter.usage, converter.produced, converter.error)
        return StreamResult(200, converter.usage, converter.produced)
    response.close()
    if isinstance(error, (UpstreamHTTPError, asyncio.TimeoutError)):
        message = "the upstream stream was interrupted" if not isinstance(error, asyncio.TimeoutError) else "the upstream stream timed out"
        try:
            await send({"type": "http.response.body", "body": converter.error_event(message), "more_body": False})
        except OSError:
            pass
        return StreamResult(502, converter.usage, converter.produced, message)
    if isinstance(error, OSError):  # writing to a client that is gone
        return StreamResult(499, converter.usage, converter.produced, "client disconnected mid-stream")
    log.error("stream relay failed", exc_info=error)
    return StreamResult(500, converter.usage, converter.produced, f"relay failed: {type(error).__name__}")


async def _pump(response: UpstreamResponse, converter: StreamConverter, send: Send) -> None:
    async for chunk in response.iter_chunks():
        out = converter.feed(chunk)
        if out:
            await send({"type": "http.response.body", "body": out, "more_body": True})
    await send({"type": "http.response.body", "body": converter.finish(), "more_body": False})


async def _pump_metered(response: UpstreamResponse, converter: StreamConverter, send: Send, meter: StreamMeter) -> None:
    """`_pump` through a meter: only what it admits reaches the converter; raises
    `StreamCutOff` when it cuts the stream."""
    async for chunk in response.iter_chunks():
        admitted = await meter.admit(chunk)
        if admitted:
            out = converter.feed(admitted)
            if out:
                meter.note_client_bytes(out)
                await send({"type": "http.response.body", "body": out, "more_body": True})
        if meter.cut:
            raise StreamCutOff
    rest = meter.flush()
    out = converter.feed(rest) if rest else b""
    await send({"type": "http.response.body", "body": out + converter.finish(), "more_body": False})


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
