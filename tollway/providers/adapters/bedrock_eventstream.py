"""AWS event-stream framing (`application/vnd.amazon.eventstream`): how ConverseStream
sends its events.

Each message is a 12-byte prelude (total length, headers length, CRC32 of those eight
bytes, all big-endian), the headers, the payload, and a CRC32 of everything before it.
Headers are typed name/value pairs; a Bedrock event carries `:message-type` (`event` or
`exception`), `:event-type` or `:exception-type`, and `:content-type`, and a JSON payload.

`EventStreamDecoder` takes bytes as they arrive (cut anywhere) and yields whole messages,
checking both CRCs; `encode_message` writes one (the mock's side). Pure: no I/O.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_PRELUDE = struct.Struct(">III")
_PRELUDE_LENGTH = 12
_CRC_LENGTH = 4
_MIN_MESSAGE = _PRELUDE_LENGTH + _CRC_LENGTH
# AWS's limits (botocore.eventstream): 16 MiB a message, 128 KiB of headers.
MAX_MESSAGE_LENGTH = 16 * 1024 * 1024
MAX_HEADERS_LENGTH = 128 * 1024
_STRING = 7
# Header value types → fixed sizes (bool true/false carry no bytes; 6 and 7 are length-prefixed).
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_INTS = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


class EventStreamError(ValueError):
    """Bytes that are not a valid event stream (a bad CRC, a length out of bounds)."""


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One decoded message: its headers and raw payload."""

    headers: Mapping[str, object]
    payload: bytes

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", "event"))

    @property
    def event_type(self) -> str:
        """The event's name, or the exception's (`throttlingException` ...) for an exception."""
        name = self.headers.get(":event-type") or self.headers.get(":exception-type") or self.headers.get(":error-code")
        return str(name or "")


class EventStreamDecoder:
    """Reassembles messages from chunks cut at any byte."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole message."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> Iterator[EventMessage]:
        """The whole messages ``chunk`` completes; raises `EventStreamError` for bad framing."""
        self._buffer += chunk
        while len(self._buffer) >= _PRELUDE_LENGTH:
            total, headers_length, prelude_crc = _PRELUDE.unpack_from(self._buffer)
            if zlib.crc32(self._buffer[:8]) != prelude_crc:
                raise EventStreamError("event stream prelude CRC mismatch")
            if not _MIN_MESSAGE <= total <= MAX_MESSAGE_LENGTH or headers_length > min(MAX_HEADERS_LENGTH,
                                                                                        total - _MIN_MESSAGE):
                raise EventStreamError(f"event stream message of {total} bytes with {headers_length} bytes of headers")
            if len(self._buffer) < total:
                return
            message = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack_from(">I", message, total - _CRC_LENGTH)
            if zlib.crc32(message[:-_CRC_LENGTH]) != message_crc:
                raise EventStreamError("event stream message CRC mismatch")
            end = _PRELUDE_LENGTH + headers_length
            yield EventMessage(_headers(message[_PRELUDE_LENGTH:end]), message[end:-_CRC_LENGTH])


def _headers(data: bytes) -> dict[str, object]:
    headers: dict[str, object] = {}
    at = 0
    try:
        while at < len(data):
            size = data[at]
            name = data[at + 1:at + 1 + size].decode("utf-8")
            kind = data[at + 1 + size]
            at += 2 + size
            if kind in (6, _STRING):  # bytes, string: a 2-byte length first
                (length,) = struct.unpack_from(">H", data, at)
                raw = data[at + 2:at + 2 + length]
                if len(raw) != length:
                    raise EventStreamError("event stream header value runs past the headers")
                headers[name] = raw.decode("utf-8") if kind == _STRING else raw
                at += 2 + length
            elif kind in _FIXED:
                width = _FIXED[kind]
                if at + width > len(data):
                    raise EventStreamError("event stream header value runs past the headers")
                headers[name] = (kind == 0 if kind in (0, 1) else
                                 struct.unpack_from(_INTS[kind], data, at)[0] if kind in _INTS else data[at:at + width])
                at += width
            else:
                raise EventStreamError(f"event stream header {name!r} has unknown type {kind}")
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed event stream headers: {exc}") from None
    return headers


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message with string ``headers`` (the only kind Bedrock sends) and ``payload``."""
    block = bytearray()
    for name, value in headers.items():
        encoded_name, encoded_value = name.encode(), value.encode()
        block += bytes([len(encoded_name)]) + encoded_name + bytes([_STRING])
        block += struct.pack(">H", len(encoded_value)) + encoded_value
    total = _MIN_MESSAGE + len(block) + len(payload)
    prelude = struct.pack(">II", total, len(block))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + bytes(block) + payload
    return head + struct.pack(">I", zlib.crc32(head))


def encode_event(event_type: str, payload: bytes) -> bytes:
    """A Bedrock event message (`:message-type: event`, JSON payload)."""
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, payload)


def encode_exception(exception_type: str, payload: bytes) -> bytes:
    """A Bedrock exception message (a mid-stream error: `throttlingException` ...)."""
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, payload)
