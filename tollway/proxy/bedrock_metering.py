"""Holding a ConverseStream within its reservation: `StreamMeter` for AWS event-stream
framing instead of SSE.

The same rules as `tollway.proxy.metering` (count output by an upper bound, UTF-8 bytes of
text; relay whole messages only; reserve more or cut off), with messages found by the
length in their prelude. Output is the text of `contentBlockDelta` events (text, tool
input, reasoning) and the tool name of a `contentBlockStart`. Cheap while far from the
reservation: a chunk's length bounds its text, so messages are only decoded near it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import orjson

from tollway.providers.adapters.bedrock_eventstream import EventStreamDecoder, EventStreamError
from tollway.proxy.metering import StreamMeter

EVENT_STREAM = b"application/vnd.amazon.eventstream"  # the content type of such a stream
_PRELUDE = 12
_MIN_MESSAGE = 16
_OUTPUT_EVENTS = (b"contentBlockDelta", b"contentBlockStart")


class EventStreamMeter(StreamMeter):
    """A `StreamMeter` for AWS event-stream framing (Bedrock's ConverseStream)."""

    __slots__ = ()

    async def admit(self, chunk: bytes) -> bytes:
        if self._held:
            chunk, self._held = self._held + chunk, b""
        end = _whole_messages_end(chunk)
        if end < len(chunk):
            chunk, self._held = chunk[:end], chunk[end:]
        if not chunk:
            return b""
        if self.counted + self._unparsed_bytes + len(chunk) <= self._covered:
            self._unparsed.append(chunk)
            self._unparsed_bytes += len(chunk)
            return chunk
        self._count_unparsed()
        relayed = 0
        for start, stop in _messages(chunk):
            produced = _message_output(chunk[start:stop])
            if self.counted + produced > self._covered and not await self._grow(self.counted + produced):
                self.cut = True
                return chunk[:relayed]
            self.counted += produced
            relayed = stop
        return chunk

    def _count_unparsed(self) -> None:
        for chunk in self._unparsed:  # whole messages only (see `admit`)
            self.counted += sum(_message_output(chunk[start:stop]) for start, stop in _messages(chunk))
        self._unparsed.clear()
        self._unparsed_bytes = 0


def _messages(chunk: bytes) -> Iterator[tuple[int, int]]:
    """(start, stop) of each whole message in ``chunk``."""
    at = 0
    while len(chunk) - at >= _PRELUDE:
        (total,) = struct.unpack_from(">I", chunk, at)
        if total < _MIN_MESSAGE or at + total > len(chunk):
            return
        yield at, at + total
        at += total


def _whole_messages_end(chunk: bytes) -> int:
    """The index just past the last whole message; a length that cannot be a message ends
    the walk there and the rest is relayed as it is (the converter reports the corruption)."""
    at = 0
    while len(chunk) - at >= _PRELUDE:
        (total,) = struct.unpack_from(">I", chunk, at)
        if total < _MIN_MESSAGE:
            return len(chunk)
        if at + total > len(chunk):
            return at
        at += total
    return at


def _message_output(message: bytes) -> int:
    """UTF-8 bytes of the output text in one message (0 for any other event)."""
    (headers_length,) = struct.unpack_from(">I", message, 4)
    headers = message[_PRELUDE:_PRELUDE + headers_length]
    if not any(name in headers for name in _OUTPUT_EVENTS):
        return 0
    try:
        decoded = next(EventStreamDecoder().feed(message), None)
        payload = orjson.loads(decoded.payload) if decoded is not None else None
    except (EventStreamError, orjson.JSONDecodeError):
        return 0
    if not isinstance(payload, dict):
        return 0
    return _strings(payload.get("delta") if "delta" in payload else payload.get("start"))


def _strings(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return sum(_strings(item) for name, item in value.items() if name not in ("toolUseId", "signature"))
    if isinstance(value, list):
        return sum(_strings(item) for item in value)
    return 0
