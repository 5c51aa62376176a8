"""Multipart uploads read only as far as governance needs, the rest streamed through:
`tollway.proxy.multipart`."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.errors import GatewayError
from tollway.proxy.multipart import read_head

BOUNDARY = "b0undary"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    kind = "Content-Type: audio/wav\r\n" if filename else ""
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + value + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class Client:
    """An ASGI receive over ``body`` in chunks of ``size``, counting what was taken."""

    def __init__(self, body: bytes, size: int) -> None:
        self.chunks = [body[i:i + size] for i in range(0, len(body), size)]
        self.taken = 0

    async def __call__(self) -> dict[str, Any]:
        chunk = self.chunks[self.taken]
        self.taken += 1
        return {"type": "http.request", "body": chunk, "more_body": self.taken < len(self.chunks)}


def scope(body: bytes, declared: bool = True) -> dict[str, Any]:
    headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    if declared:
        headers.append((b"content-length", str(len(body)).encode()))
    return {"headers": headers}


async def drain(upload, head: bytes) -> bytes:
    return b"".join([chunk async for chunk in upload.body(head, 1 << 30)])


async def test_reads_up_to_the_first_file_and_streams_the_rest() -> None:
    audio = bytes(range(256)) * 4000  # ~1 MB
    body = form(part("model", b"openai/whisper-1"), part("language", b"en"), part("file", audio, "a.wav"))
    client = Client(body, 16_384)
    upload = await read_head(scope(body), client, 1 << 30)
    assert upload.text("model") == "openai/whisper-1" and upload.text("language") == "en"
    assert not upload.complete and client.taken == 1  # one chunk of 64 read, the rest not yet
    head = upload.rewritten_head("model", "whisper-1")
    sent = await drain(upload, head)
    assert sent == body.replace(b"openai/whisper-1", b"whisper-1")
    assert len(sent) == upload.length - len(upload.head) + len(head)


async def test_a_file_before_the_model_is_read_whole_to_find_it() -> None:
    body = form(part("file", b"x" * 50_000, "a.wav"), part("model", b"whisper-1"))
    upload = await read_head(scope(body), Client(body, 4096), 1 << 30)
    assert upload.complete and upload.text("model") == "whisper-1" and upload.files == 1


async def test_a_body_without_content_length_is_read_whole() -> None:
    body = form(part("model", b"whisper-1"), part("file", b"x" * 50_000, "a.wav"))
    upload = await read_head(scope(body, declared=False), Client(body, 4096), 1 << 30)
    assert upload.complete and upload.length == len(body)


@pytest.mark.parametrize("late", ["model", "n", "size", "quality", "stream", "user"])
async def test_a_governed_field_after_the_file_is_refused_while_streaming(late: str) -> None:
    body = form(part("model", b"gpt-image-1"), part("image", b"x" * 100_000, "a.png"), part(late, b"gpt-4o"))
    upload = await read_head(scope(body), Client(body, 8192), 1 << 30)
    assert not upload.complete
    with pytest.raises(GatewayError) as caught:
        await drain(upload, upload.head)
    assert caught.value.status == 400 and caught.value.param == late


async def test_a_late_field_split_across_chunks_is_still_seen() -> None:
    body = form(part("model", b"whisper-1"), part("file", b"x" * 20_000, "a.wav"), part("model", b"dearer"))
    at = body.rindex(b'name="model"') + 3  # cut inside the part's headers
    client = Client(body, 1)
    client.chunks = [body[:9000], body[9000:at], body[at:]]
    upload = await read_head(scope(body), client, 1 << 30)
    with pytest.raises(GatewayError):
        await drain(upload, upload.head)


async def test_a_field_given_twice_before_the_file_is_refused() -> None:
    body = form(part("model", b"whisper-1"), part("model", b"gpt-4o-transcribe"), part("file", b"x", "a.wav"))
    with pytest.raises(GatewayError) as caught:
        await read_head(scope(body), Client(body, 1 << 20), 1 << 30)
    assert caught.value.param == "model"


async def test_a_file_named_like_a_field_is_a_file() -> None:
    body = form(part("model", b"whisper-1"), part("file", b'name="model"\r\n\r\n', "model"))
    upload = await read_head(scope(body), Client(body, 1 << 20), 1 << 30)
    assert upload.text("model") == "whisper-1" and upload.files == 1


async def test_size_limits_declared_and_streamed() -> None:
    body = form(part("model", b"whisper-1"), part("file", b"x" * 10_000, "a.wav"))
    with pytest.raises(GatewayError) as declared:
        await read_head(scope(body), Client(body, 1024), 5_000)
    assert declared.value.status == 413
    upload = await read_head(scope(body), Client(body, 1024), 1 << 30)
    with pytest.raises(GatewayError) as streamed:  # the client sends more than it declared
        b"".join([chunk async for chunk in upload.body(upload.head, 5_000)])
    assert streamed.value.status == 413


async def test_not_multipart_is_a_400() -> None:
    with pytest.raises(GatewayError) as caught:
        await read_head({"headers": [(b"content-type", b"application/json")]}, Client(b"{}", 10), 1 << 20)
    assert caught.value.status == 400 and "multipart/form-data" in caught.value.message
