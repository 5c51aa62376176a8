"""Multipart uploads (transcriptions, translations, image edits), read only as far as
governance needs: the text fields that come before the first file.

The gateway must know the model (and for audio, the upload's size) before it reserves
and forwards, but must not hold a 25 MB upload whole to find it: `read_head` reads until
the first file part begins, `Upload.rewritten_head` swaps the model field's value for the
provider's name, and the rest of the body is relayed to the provider as it arrives
(`Upload.body`). OpenAI's SDKs send the text fields first; a client that sends the file
before the model field makes the gateway read the whole upload (still within the size
limit) to find it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tollway.asgi import ClientGone, Receive, Scope, header
from tollway.errors import GatewayError, bad_request, payload_too_large

_BOUNDARY = re.compile(rb'boundary="?([^";]+)"?', re.IGNORECASE)
_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb'\bfilename\*?=', re.IGNORECASE)
_MAX_FIELD_BYTES = 1 << 20  # one text field (a prompt) beyond this is not a form a provider takes
# Fields the price, the relaying or the end user charged depends on: sent twice, or after
# the first file (where the gateway no longer reads them), they could make the provider run
# what was not priced, or for an end user the gateway did not charge.
GOVERNED_FIELDS = frozenset({"model", "n", "size", "quality", "stream", "user"})
# The fields before the first file are looked for this far; past it the body is read whole.
_MAX_HEAD_BYTES = 2 << 20
_GUARD_OVERLAP = 4096  # a part's headers longer than this are not a form field a client sends


@dataclass(slots=True)
class _Field:
    name: str
    value: bytes
    value_start: int  # offsets in the head
    value_end: int


@dataclass(slots=True)
class Upload:
    """A multipart request read up to its first file (or whole, ``complete``)."""

    content_type: str
    length: int  # the whole body's bytes (Content-Length, or counted when read whole)
    head: bytes  # the bytes read so far
    fields: dict[str, _Field] = field(default_factory=dict)
    files: int = 0  # file parts seen in ``head``
    complete: bool = False  # ``head`` is the whole body
    delimiter: bytes = b""
    fields_end: int = 0  # where the first file part's delimiter starts in ``head``
    _receive: Receive | None = None

    def text(self, name: str) -> str | None:
        found = self.fields.get(name)
        return found.value.decode("utf-8", "replace") if found is not None else None

    def rewritten_head(self, name: str, value: str) -> bytes:
        """``head`` with field ``name``'s value replaced by ``value``."""
        found = self.fields[name]
        return self.head[:found.value_start] + value.encode() + self.head[found.value_end:]

    async def body(self, head: bytes, limit: int) -> AsyncIterator[bytes]:
        """``head``, then the rest of the client's body as it arrives; a body longer than its
        Content-Length or ``limit`` ends the upload (the provider sees a short body, the
        client a 413 when the connection allows)."""
        yield head
        if self.complete or self._receive is None:
            return
        received = len(self.head)
        guard = _LateFieldGuard(self.delimiter, self.head[self.fields_end:])
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise payload_too_large(limit)
            if chunk:
                guard.check(chunk)
                yield chunk
            if not message.get("more_body", False):
                return


class _LateFieldGuard:
    """Watches the streamed rest of an upload for a governed field after the first file
    (a part without a filename named in `GOVERNED_FIELDS`) and refuses it: the gateway
    priced the request from the fields before the file. Keeps only a small overlap
    between chunks (a part's headers may be split across them)."""

    __slots__ = ("_delimiter", "_tail")

    def __init__(self, delimiter: bytes, seen: bytes) -> None:
        self._delimiter = b"\r\n" + delimiter
        self._tail = seen[-_GUARD_OVERLAP:]

    def check(self, chunk: bytes) -> None:
        data = self._tail + chunk
        at = data.find(self._delimiter)
        while at >= 0:
            headers_end = data.find(b"\r\n\r\n", at)
            if headers_end < 0:
                if len(data) - at > _GUARD_OVERLAP:
                    raise bad_request("a part of the upload has headers too long to read")
                self._tail = data[at:]  # this part's headers end in the next chunk
                return
            part_headers = data[at + len(self._delimiter):headers_end]
            name = _NAME.search(part_headers)
            if name is not None and not _FILENAME.search(part_headers):
                key = name.group(1).decode("utf-8", "replace")
                if key in GOVERNED_FIELDS:
                    raise bad_request(f"the form field {key!r} must come before the file, once: the gateway reads "
                                      "the fields it prices the request by before forwarding the upload", key)
            at = data.find(self._delimiter, headers_end)
        self._tail = data[-_GUARD_OVERLAP:]


def _twice(key: str) -> GatewayError:
    return bad_request(f"the form field {key!r} is given twice: send it once", key)


async def read_head(scope: Scope, receive: Receive, limit: int) -> Upload:
    """The upload's text fields up to its first file; a 400 for a body that is not
    multipart/form-data, a 413 past ``limit`` (a declared size over it: before reading)."""
    content_type = (header(scope, b"content-type") or b"").decode("latin-1")
    match = _BOUNDARY.search(content_type.encode("latin-1"))
    if not content_type.lower().startswith("multipart/form-data") or match is None:
        raise bad_request("this route takes a multipart/form-data body (a file upload) with a boundary")
    declared = header(scope, b"content-length")
    length = -1
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise GatewayError(400, "invalid_request_error", "Content-Length is not a number") from None
        if length > limit:
            raise payload_too_large(limit)
    delimiter = b"--" + match.group(1)
    upload = Upload(content_type, length, b"", delimiter=delimiter, _receive=receive)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise payload_too_large(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
        if more and size <= _MAX_HEAD_BYTES and length >= 0:  # past it: read whole, joined once at the end
            upload.head = chunks[0] = b"".join(chunks)
            del chunks[1:]
            if _parse(upload, delimiter, whole=False) and "model" in upload.fields:
                return upload  # the rest streams through
    upload.head = b"".join(chunks)
    upload.complete = True
    upload.length = len(upload.head)
    _parse(upload, delimiter, whole=True)
    return upload


def _parse(upload: Upload, delimiter: bytes, whole: bool) -> bool:
    """Read the text fields of ``upload.head`` up to the first file (all of them when
    ``whole``); True once a file part has begun (everything before it is known)."""
    head = upload.head
    upload.fields.clear()
    upload.files = 0
    at = head.find(delimiter)
    if at < 0:
        if len(head) > _MAX_FIELD_BYTES:
            raise bad_request("the multipart body does not start with its boundary")
        return False
    file_seen = False
    while True:
        start = at + len(delimiter)
        if head[start:start + 2] == b"--":
            return file_seen  # the closing delimiter
        headers_end = head.find(b"\r\n\r\n", start)
        if headers_end < 0:
            return file_seen
        part_headers = head[start:headers_end]
        name = _NAME.search(part_headers)
        value_start = headers_end + 4
        end = head.find(b"\r\n" + delimiter, value_start)
        if _FILENAME.search(part_headers):
            upload.files += 1
            if not file_seen:
                upload.fields_end = at
            file_seen = True
            if not whole:
                return True
        elif name is not None:
            if end < 0:
                if len(head) - value_start > _MAX_FIELD_BYTES:
                    raise bad_request(f"the form field {name.group(1).decode(errors='replace')!r} is too long")
                return file_seen
            key = name.group(1).decode("utf-8", "replace")
            if key in upload.fields and key in GOVERNED_FIELDS:
                raise _twice(key)
            upload.fields.setdefault(key, _Field(key, head[value_start:end], value_start, end))
        if end < 0:
            return file_seen
        at = end + 2
