"""The batch file upload's multipart reader: the same fields and lines however the body is
cut into chunks (a boundary or a line break split across two), and clear refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tollway.errors import GatewayError
from tollway.proxy.batch_upload import FileLine, FileStart, FormField, form_events

BODY = (b'--XyZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        b'{"a":1}\r\n{"b":2}\n\n{"c":"--XyZ inside a line"}\r\n--XyZ--\r\n')
EXPECTED = [FormField("purpose", "batch"), FileStart("file", "a.jsonl"), FileLine(b'{"a":1}'), FileLine(b'{"b":2}'),
            FileLine(b'{"c":"--XyZ inside a line"}')]


def read(body: bytes, step: int, limit: int = 1 << 20, max_line: int = 1000) -> list[Any]:
    chunks = [body[i:i + step] for i in range(0, len(body), step)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def run() -> list[Any]:
        scope = {"headers": [(b"content-type", b"multipart/form-data; boundary=XyZ")]}
        return [event async for event in form_events(scope, receive, limit, max_line)]

    return asyncio.run(run())


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 11, 64, len(BODY)])
def test_the_same_events_whatever_the_chunks(step: int) -> None:
    assert read(BODY, step) == EXPECTED


def test_a_body_cut_short_is_refused() -> None:
    with pytest.raises(GatewayError) as caught:
        read(BODY[:-12], 16)
    assert caught.value.status == 400


def test_an_upload_over_the_limit_is_413() -> None:
    with pytest.raises(GatewayError) as caught:
        read(BODY, 16, limit=100)
    assert caught.value.status == 413


def test_a_line_over_the_limit_is_refused_naming_the_file() -> None:
    with pytest.raises(GatewayError) as caught:
        read(BODY.replace(b'{"a":1}', b'{"a":"' + b"x" * 2000 + b'"}'), 64)
    assert caught.value.status == 400 and caught.value.param == "file"
