"""Server-sent events: an incremental parser for upstream streams and an encoder for clients.

No I/O here: the relay feeds whatever bytes arrived and gets back the events completed so far.
"""

from __future__ import annotations

from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its ``event:`` name (None when absent) and its joined ``data:`` lines."""

    event: str | None
    data: bytes


class SSEParser:
    """Turns a byte stream, split anywhere, into complete events (WHATWG SSE rules).

    Lines may end in ``\\n``, ``\\r\\n`` or ``\\r``; several ``data:`` lines are joined with
    ``\\n``; comments (``:`` lines), ``id:`` and ``retry:`` are ignored; a block without data is
    not dispatched. Work is done per chunk with bytes methods, never per byte in Python.
    """

    __slots__ = ("_pending", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._started = False
        self._skip_lf = False

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Add the next chunk; return the events it completed, in order."""
        if not data:
            return []
        if self._skip_lf:  # the previous chunk ended in \r, already taken as a line end
            self._skip_lf = False
            if data.startswith(b"\n"):
                data = data[1:]
                if not data:
                    return []
        self._pending.append(data)
        if b"\n" not in data and b"\r" not in data:
            # No line ended in this chunk, so no event can have ended: skip the join, which
            # keeps a long line arriving in many small chunks linear rather than quadratic.
            return []
        buf = self._take_pending()
        if b"\r" in buf:
            # A final \r may be the first half of a \r\n split across chunks: end the line now
            # and drop the \n if it comes.
            self._skip_lf = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *blocks, rest = buf.split(b"\n\n")
        if rest:
            self._pending.append(rest)
        return [event for block in blocks if (event := _parse_block(block)) is not None]

    def flush(self) -> list[SSEEvent]:
        """Dispatch an event left unterminated when the stream ended.

        The SSE spec discards such a remainder; some upstreams omit the final blank line,
        so the relay may call this at end of stream to be lenient.
        """
        buf = self._take_pending().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        event = _parse_block(buf.strip(b"\n"))
        return [] if event is None else [event]

    def _take_pending(self) -> bytes:
        buf = b"".join(self._pending)
        self._pending.clear()
        if not self._started:  # the first join holds the stream's very first bytes
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[len(_BOM):]
        return buf


def _parse_block(block: bytes) -> SSEEvent | None:
    """Parse the lines of one event block (no blank lines inside)."""
    if block.startswith(b"data: ") and b"\n" not in block:  # OpenAI's shape: one data line
        return SSEEvent(None, block[6:])
    if block.startswith(b"event: "):  # Anthropic's shape: an event line, then one data line
        end = block.find(b"\n")
        if block.startswith(b"data: ", end + 1) and block.find(b"\n", end + 1) < 0:
            return SSEEvent(block[7:end].decode("utf-8", "replace"), block[end + 7:])
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if not data:
        return None
    return SSEEvent(event, data[0] if len(data) == 1 else b"\n".join(data))


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """Frame ``data`` as one SSE event (``event: X`` first when named), ending in a blank line."""
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        body = b"".join(b"data: " + line + b"\n" for line in lines)
    else:
        body = b"data: " + data + b"\n"
    if event is None:
        return body + b"\n"
    return b"event: " + event.encode() + b"\n" + body + b"\n"
