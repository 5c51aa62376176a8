"""Holding a ConverseStream within its reservation: the AWS event-stream `Framing` of the
one `StreamMeter` (`tollway.proxy.metering`, which alone decides what to relay, reserve
or cut off).

Messages are found by the length in their prelude. Output is the text of
`contentBlockDelta` events (text, tool input, reasoning) and the tool name of a
`contentBlockStart`, counted as UTF-8 bytes (an upper bound of its tokens).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, ClassVar

import orjson

from tollway.providers.adapters.bedrock_eventstream import EventStreamDecoder, EventStreamError
from tollway.proxy.metering import Framing, StreamMeter

EVENT_STREAM = b"application/vnd.amazon.eventstream"  # the content type of such a stream
_PRELUDE = 12
_MIN_MESSAGE = 16
_OUTPUT_EVENTS = (b"contentBlockDelta", b"contentBlockStart")


def _messages(chunk: bytes) -> Iterator[tuple[int, int]]:
    """(start, stop) of each whole message in ``chunk``."""
    at = 0
    while len(chunk) - at >= _PRELUDE:
        (total,) = struct.unpack_from(">I", chunk, at)
        if total < _MIN_MESSAGE or at + total > len(chunk):
            return
        yield at, at + total
        at += total


def _message_outputs(chunk: bytes) -> Iterator[tuple[int, int]]:
    """`Framing.outputs` of AWS event-stream: each message's output and its end."""
    for start, stop in _messages(chunk):
        yield _message_output(chunk[start:stop]), stop


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


AWS_EVENT_STREAM = Framing(_whole_messages_end, _message_outputs)


class EventStreamMeter(StreamMeter):
    """The `StreamMeter` of a stream in AWS event-stream framing (Bedrock's ConverseStream)."""

    __slots__ = ()

    framing: ClassVar[Framing] = AWS_EVENT_STREAM


def _strings(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return sum(_strings(item) for name, item in value.items() if name not in ("toolUseId", "signature"))
    if isinstance(value, list):
        return sum(_strings(item) for item in value)
    return 0
