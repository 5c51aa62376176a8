"""A batch input file upload (`POST /v1/files`, multipart/form-data), read as it arrives:
text fields whole, the file line by line, never the whole upload in memory.

Every line of the file is checked and rewritten before the provider sees a byte of it
(`tollway.proxy.batch_lines`), so the rewritten lines are spooled (in memory up to
``SPOOL_MEMORY_BYTES``, then in a temporary file) and sent to the provider once all of them
passed: a bad line 10,000 refuses the upload without a partial file at the provider, and
the provider receives exactly the bytes the gateway read and charged for.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

from tollway.asgi import ClientGone, Receive, Scope, header
from tollway.errors import GatewayError, bad_request

SPOOL_MEMORY_BYTES = 8 << 20
_CHUNK_BYTES = 256 << 10
_MAX_FIELD_BYTES = 64 << 10  # a text field (purpose, expires_after) longer than this is no form a provider takes
_BOUNDARY = re.compile(rb'boundary="?([^";]+)"?', re.IGNORECASE)
_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb'\bfilename="([^"]*)"', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class FileStart:
    name: str
    filename: str


@dataclass(frozen=True, slots=True)
class FileLine:
    data: bytes  # one line of the file, without its line break


FormEvent = FormField | FileStart | FileLine


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, "request_too_large", f"the upload is larger than the limit of {limit} bytes "
                        "(batches.max_file_bytes)", headers=[(b"connection", b"close")])


async def form_events(scope: Scope, receive: Receive, limit: int, max_line_bytes: int) -> AsyncIterator[FormEvent]:
    """The upload's fields and file lines in order; a 400 for a body that is not
    multipart/form-data, a 413 past ``limit`` bytes (a declared size over it: before reading)."""
    content_type = header(scope, b"content-type") or b""
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith(b"multipart/form-data") or match is None:
        raise bad_request("this route takes a multipart/form-data body (a file upload) with a boundary")
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    parser = _Parser(b"--" + match.group(1), max_line_bytes)
    received = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        more = message.get("more_body", False)
        for event in parser.feed(chunk, final=not more):
            yield event
    if not parser.closed:
        raise bad_request("the multipart body ends before its closing boundary")


class _Parser:
    """multipart/form-data, incrementally: ``feed`` returns the events its chunk completes."""

    def __init__(self, delimiter: bytes, max_line_bytes: int) -> None:
        self._delimiter = delimiter
        self._marker = b"\r\n" + delimiter  # ends every part's content
        self._max_line = max_line_bytes
        self._buffer = b""
        self._state = "preamble"  # preamble, boundary, headers, field, file, done
        self._field = ""
        self._line = b""
        self.closed = False

    def feed(self, chunk: bytes, final: bool) -> list[FormEvent]:
        self._buffer += chunk
        events: list[FormEvent] = []
        while self._step(events):
            pass
        if final and self._state == "file":
            raise bad_request("the file part of the upload is cut short")
        return events

    def _step(self, events: list[FormEvent]) -> bool:
        """Advance as far as the buffer allows; True when the state changed."""
        buffer, state = self._buffer, self._state
        if state == "preamble":
            at = buffer.find(self._delimiter)
            if at < 0:
                if len(buffer) > _MAX_FIELD_BYTES:
                    raise bad_request("the multipart body does not start with its boundary")
                return False
            return self._past(at + len(self._delimiter))
        if state == "boundary":  # after a delimiter: "--" closes the body, else a part begins
            if len(buffer) < 2:
                return False
            if buffer.startswith(b"--"):
                self._state, self.closed, self._buffer = "done", True, b""
                return False
            self._state, self._buffer = "headers", buffer[2:] if buffer.startswith(b"\r\n") else buffer
            return True
        if state == "headers":
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_FIELD_BYTES:
                    raise bad_request("a part of the upload has headers too long to read")
                return False
            self._open_part(buffer[:end], events)
            self._buffer = buffer[end + 4:]
            return True
        if state in ("field", "file"):
            at = buffer.find(self._marker)
            if at < 0:
                keep = len(self._marker) - 1  # the marker may begin at the chunk's end
                if state == "field" and len(buffer) > _MAX_FIELD_BYTES:
                    raise bad_request(f"the form field {self._field!r} is too long", self._field)
                if state == "file" and len(buffer) > keep:
                    self._lines(buffer[:-keep], events)
                    self._buffer = buffer[-keep:]
                return False
            if state == "field":
                events.append(FormField(self._field, buffer[:at].decode("utf-8", "replace")))
            else:
                self._lines(buffer[:at], events)
                if self._line.strip():
                    events.append(FileLine(self._line.rstrip(b"\r")))
                self._line = b""
            return self._past(at + len(self._marker))
        return False

    def _past(self, at: int) -> bool:
        self._state, self._buffer = "boundary", self._buffer[at:]
        return True

    def _open_part(self, headers: bytes, events: list[FormEvent]) -> None:
        name = _NAME.search(headers)
        filename = _FILENAME.search(headers)
        self._field = name.group(1).decode("utf-8", "replace") if name else ""
        if filename is not None:
            self._state = "file"
            events.append(FileStart(self._field, filename.group(1).decode("utf-8", "replace")))
        else:
            self._state = "field"

    def _lines(self, data: bytes, events: list[FormEvent]) -> None:
        pending = self._line + data
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            line = pending[start:end].rstrip(b"\r")
            if line.strip():
                events.append(FileLine(line))
            start = end + 1
        self._line = pending[start:]
        if len(self._line) > self._max_line:
            raise bad_request(f"a line of the file is longer than {self._max_line} bytes (max_body_bytes)", "file")


class Spool:
    """The rewritten file: in memory while small, then in a temporary file (removed on close)."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - closed by close()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    async def chunks(self) -> AsyncIterator[bytes]:
        self._file.seek(0)
        while chunk := self._file.read(_CHUNK_BYTES):
            yield chunk

    def close(self) -> None:
        self._file.close()


def multipart_body(boundary: str, filename: str, spool: Spool) -> tuple[str, int, AsyncIterator[bytes]]:
    """(content type, length, body) of the upload the provider receives: ``purpose=batch``
    and the spooled file."""
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "") or "batch.jsonl"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe_name}\"\r\n"
            "Content-Type: application/jsonl\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for chunk in spool.chunks():
            yield chunk
        yield tail

    return f"multipart/form-data; boundary={boundary}", len(head) + spool.size + len(tail), body()


def new_boundary() -> str:
    return "tollway-" + os.urandom(12).hex()
