"""Governance of the media routes through the real gateway and the `openai` SDK: each
route charged in its own unit on every level, budgets refused before the call (402),
key request limits across routes, strict mode holding the upload's worst case, failures
charging nothing, size limits, and request-log rows that name the route."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest
from sqlalchemy import select

from tests.integration.conftest import mock_control
from tests.integration.test_governance import key, key_limits
from tests.integration.test_media_routes import client, media_gateway, wav
from tollway.governance.model import budget_counter, request_counter, token_counter
from tollway.store.tables import RequestLog

KEY = "tw-media-0123456789abcdefghijklmnop"
DAY_BUDGET = {"max_limit": 10, "reset_duration": "1d"}


def spent(running, value: str = KEY) -> int:
    limits = key_limits(running, value)
    state = running.counters().get(budget_counter(limits.budget.id))
    return state.used if state else 0


def rows(running) -> list[RequestLog]:
    async def read() -> list[RequestLog]:
        await running.runtime.log_writer.flush()
        async with running.runtime.db.session() as session:
            return list(await session.scalars(select(RequestLog).order_by(RequestLog.id)))

    return running.call(read())


async def test_each_route_is_charged_in_its_own_unit_and_logged_with_its_route(gateway, mock) -> None:
    running = media_gateway(gateway, mock, [key(KEY, budget=DAY_BUDGET)])
    sdk = client(running, KEY)
    await sdk.images.generate(model="openai/dall-e-3", prompt="a", n=2, size="1024x1024", quality="hd")
    assert spent(running) == 2 * 80_000_000  # 2 × $0.08
    await sdk.audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", wav(3.0), "audio/wav"))
    assert spent(running) == 160_000_000 + 300_000  # 3 s × $0.0001 (usage of type duration)
    await sdk.audio.translations.create(model="openai/whisper-1", file=("a.wav", wav(2.5), "audio/wav"),
                                        response_format="verbose_json")
    assert spent(running) == 160_300_000 + 250_000  # verbose_json's duration, 2.5 s
    text = "x" * 1000
    await sdk.audio.speech.create(model="openai/tts-1", voice="alloy", input=text)
    assert spent(running) == 160_550_000 + 15_000_000  # 1,000 characters × $15 per million
    await sdk.moderations.create(model="openai/omni-moderation-latest", input="y" * 400)
    moderation = spent(running) - 175_550_000
    assert 0 < moderation <= 400_000  # ≤ 400 tokens × $1 per million (estimated from the body's size)
    edited = await sdk.images.edit(model="openai/gpt-image-1", image=("in.png", b"\x89PNG", "image/png"),
                                   prompt="moon", quality="low")
    assert spent(running) - 175_550_000 - moderation == 50 * 5_000 + 272 * 40_000  # tokens as reported
    assert edited.usage.output_tokens == 272
    assert running.runtime.enforcer.reservations_in_flight == 0
    logged = rows(running)
    assert [row.route for row in logged] == ["images.generations", "audio.transcriptions", "audio.translations",
                                             "audio.speech", "moderations", "images.edits"]
    assert all(row.status == 200 and row.virtual_key_id == KEY[:8] for row in logged)
    assert float(logged[0].cost) == pytest.approx(0.16)


async def test_budget_is_refused_before_the_call_with_402(gateway, mock) -> None:
    running = media_gateway(gateway, mock, [key(KEY, budget={"max_limit": 0.1, "reset_duration": "1d"})])
    sdk = client(running, KEY)
    before = len(mock.state.requests)
    with pytest.raises(openai.APIStatusError) as caught:  # 2 × $0.08 > $0.10 reserved before the call
        await sdk.images.generate(model="openai/dall-e-3", prompt="a", n=2, size="1024x1024", quality="hd")
    assert caught.value.status_code == 402 and caught.value.body["type"] == "budget_exceeded"
    assert caught.value.body["scope"]["level"] == "virtual_key"
    assert len(mock.state.requests) == before
    await sdk.images.generate(model="openai/dall-e-3", prompt="a", size="1024x1024", quality="hd")
    with pytest.raises(openai.APIStatusError) as again:  # $0.08 spent: another does not fit
        await sdk.audio.speech.create(model="openai/tts-1", voice="alloy", input="z" * 2000)
    assert again.value.status_code == 402
    assert spent(running) == 80_000_000


async def test_unnamed_sizes_are_reserved_at_the_dearest_price(gateway, mock) -> None:
    # No size or quality in the table's keys and no default: the dearest price, never free.
    running = media_gateway(gateway, mock, [key(KEY, budget={"max_limit": 0.1, "reset_duration": "1d"})],
                            pricing={"dall-e-3": {"per_image": {"1024x1024/standard": 0.04, "1792x1024/hd": 0.12}}})
    with pytest.raises(openai.APIStatusError) as caught:
        await client(running, KEY).images.generate(model="openai/dall-e-3", prompt="a", size="1024x1792")
    assert caught.value.status_code == 402


async def test_key_request_limit_counts_every_media_route(gateway, mock) -> None:
    running = media_gateway(gateway, mock, [key(KEY, rate_limit={"request_max_limit": 3, "request_reset_duration": "1h"})])
    sdk = client(running, KEY)
    await sdk.moderations.create(model="openai/omni-moderation-latest", input="a")
    await sdk.audio.speech.create(model="openai/tts-1", voice="alloy", input="a")
    await sdk.audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", wav(1), "audio/wav"))
    before = len(mock.state.requests)
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.images.generate(model="openai/dall-e-3", prompt="a")
    assert caught.value.body["type"] == "request_limited"
    assert len(mock.state.requests) == before
    assert running.counters()[request_counter(key_limits(running, KEY).rate_limit.id)].used == 3


async def test_request_limit_is_exact_under_concurrent_uploads(gateway, mock) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"latency_ms": 50})
    running = media_gateway(gateway, mock, [key(KEY, rate_limit={"request_max_limit": 5, "request_reset_duration": "1h"})])
    sdk = client(running, KEY)
    audio = wav(2.0)

    async def one() -> int:
        try:
            await sdk.audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", audio, "audio/wav"))
        except openai.APIStatusError as exc:
            return exc.status_code
        return 200

    statuses = await asyncio.gather(*(one() for _ in range(20)))
    assert statuses.count(200) == 5 and statuses.count(429) == 15
    assert sum(1 for r in mock.state.requests if r["path"] == "/v1/audio/transcriptions") == 5


async def test_token_limit_holds_moderations(gateway, mock) -> None:
    running = media_gateway(gateway, mock, [key(KEY, rate_limit={"token_max_limit": 100, "token_reset_duration": "1h"})])
    sdk = client(running, KEY)
    await sdk.moderations.create(model="openai/omni-moderation-latest", input="a" * 100)
    used = running.counters()[token_counter(key_limits(running, KEY).rate_limit.id)].used
    assert 0 < used <= 100
    with pytest.raises(openai.RateLimitError):
        await sdk.moderations.create(model="openai/omni-moderation-latest", input="a" * 1000)


def strict_budget(max_limit: float) -> dict[str, Any]:
    return {"max_limit": max_limit, "reset_duration": "1d", "enforcement": "strict"}


async def test_strict_mode_reserves_the_uploads_worst_case(gateway, mock) -> None:
    # A 10 s, 8 kHz WAV is 160 KB: at most 214 s of audio at 750 bytes a second ($0.0214),
    # which a strict $0.01 budget refuses although the audio costs $0.001; the estimate
    # (160 KB at 16,000 bytes a second: 11 s) fits a budget in estimate mode.
    audio = wav(10.0)
    strict = media_gateway(gateway, mock, [key(KEY, budget=strict_budget(0.01))])
    with pytest.raises(openai.APIStatusError) as caught:
        await client(strict, KEY).audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", audio, "audio/wav"))
    assert caught.value.status_code == 402
    assert spent(strict) == 0
    estimate = media_gateway(gateway, mock, [key(KEY, budget={"max_limit": 0.01, "reset_duration": "1d"})])
    await client(estimate, KEY).audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", audio, "audio/wav"))
    assert spent(estimate) == 1_000_000  # 10 s as reported


async def test_strict_mode_with_a_configured_max_duration(gateway, mock) -> None:
    running = media_gateway(gateway, mock, [key(KEY, budget=strict_budget(0.01))], media={"max_audio_seconds": 60})
    sdk = client(running, KEY)
    await sdk.audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", wav(10.0), "audio/wav"))
    assert spent(running) == 1_000_000


async def test_strict_speech_is_exact_and_refused_when_it_does_not_fit(gateway, mock) -> None:
    running = media_gateway(gateway, mock, [key(KEY, budget=strict_budget(0.3))])  # 20,000 characters
    sdk = client(running, KEY)
    await sdk.audio.speech.create(model="openai/tts-1", voice="alloy", input="a" * 15_000)
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.audio.speech.create(model="openai/tts-1", voice="alloy", input="a" * 5_001)
    assert caught.value.status_code == 402
    await sdk.audio.speech.create(model="openai/tts-1", voice="alloy", input="a" * 5_000)
    assert spent(running) == 300_000_000


async def test_upstream_failure_charges_nothing_and_frees_the_reservation(gateway, mock) -> None:
    running = media_gateway(gateway, mock, [key(KEY, budget=DAY_BUDGET)])
    await mock_control(mock, "POST", "/_mock/faults", {"status": 500, "count": 1, "path": "/audio/"})
    with pytest.raises(openai.InternalServerError):
        await client(running, KEY).audio.transcriptions.create(model="openai/whisper-1",
                                                               file=("a.wav", wav(1), "audio/wav"))
    # Twice: the HTTP client retries once on a fresh connection when a kept-alive one was dropped.
    await mock_control(mock, "POST", "/_mock/faults", {"drop": "before_response", "count": 2, "path": "/images/"})
    with pytest.raises(openai.APIStatusError) as caught:
        await client(running, KEY).images.generate(model="openai/dall-e-3", prompt="a")
    assert caught.value.status_code == 502
    assert spent(running) == 0 and running.runtime.enforcer.reservations_in_flight == 0
    assert [row.status for row in rows(running)] == [500, 502]


async def test_speech_cut_mid_stream_is_charged_what_was_reserved(gateway, mock) -> None:
    # The provider produced (and bills) the audio: the client gets what came, the key is charged.
    running = media_gateway(gateway, mock, [key(KEY, budget=DAY_BUDGET)])
    await mock_control(mock, "POST", "/_mock/faults", {"drop": "mid_stream", "after_chunks": 2, "count": 1})
    with pytest.raises(Exception, match="incomplete|peer closed"):  # the body ends short: the client knows it was cut
        async with client(running, KEY).audio.speech.with_streaming_response.create(
                model="openai/tts-1", voice="alloy", input="a" * 1000) as response:
            await response.read()
    assert spent(running) == 15_000_000
    [row] = rows(running)
    assert row.status == 502 and row.route == "audio.speech"


async def _raw_upload(running, headers: dict[str, str], pieces: list[bytes]) -> bytes:
    """Send a multipart head and ``pieces`` raw; the status line the gateway answers."""
    host, port = running.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\n{lines}\r\n".encode())
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
    except ConnectionError:
        pass  # refused while sending: the answer is already there
    status = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return status


async def test_uploads_are_bounded_by_max_upload_bytes_not_max_body_bytes(gateway, mock) -> None:
    running = media_gateway(gateway, mock, max_body_bytes=64 * 1024, media={"max_upload_bytes": 400_000})
    sdk = client(running)
    big = wav(15.0)  # 240 KB: over max_body_bytes, within max_upload_bytes
    answer = await sdk.audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", big, "audio/wav"))
    assert answer.text == "mock transcribe of 15 seconds of audio"
    assert mock.state.requests[-1]["files"] == {"file": len(big)}
    before = len(mock.state.requests)
    boundary = "b0"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nopenai/whisper-1\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n').encode()
    multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    declared = await _raw_upload(running, {**multipart, "Content-Length": "500000"}, [head])
    assert declared.startswith(b"HTTP/1.1 413")  # at once: nothing of it read
    chunked = await _raw_upload(running, {**multipart, "Transfer-Encoding": "chunked"},
                                [b"%x\r\n%s\r\n" % (len(head), head)] + [b"10000\r\n" + b"x" * 65536 + b"\r\n"] * 8)
    assert chunked.startswith(b"HTTP/1.1 413")  # once past the limit
    assert len(mock.state.requests) == before
    async with aiohttp.ClientSession() as session, session.post(
            running.v1 + "/audio/speech", json={"model": "openai/tts-1", "voice": "alloy", "input": "a" * 70_000}) as r:
        assert r.status == 413  # the JSON routes keep max_body_bytes


async def test_require_price_refuses_an_unpriced_media_model(gateway, mock) -> None:
    running = media_gateway(gateway, mock, require_price=True)
    with pytest.raises(openai.BadRequestError) as caught:
        await client(running).images.generate(model="openai/dall-e-2", prompt="a")
    assert caught.value.body["type"] == "model_unpriced"
    await client(running).images.generate(model="openai/dall-e-3", prompt="a")  # priced in PRICING


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt": "a"}, "model"), ({"model": "openai/dall-e-3"}, "prompt"),
    ({"model": "openai/dall-e-3", "prompt": "a", "n": 11}, "n"), ({"model": "openai/dall-e-3", "prompt": "a", "n": 0}, "n"),
    ({"model": "openai/dall-e-3", "prompt": "a", "size": 1024}, "size"), ({"model": 5, "prompt": "a"}, "model"),
])
async def test_bad_image_requests_are_400s_naming_the_field(gateway, mock, body, field) -> None:
    running = media_gateway(gateway, mock)
    before = len(mock.state.requests)
    async with aiohttp.ClientSession() as session, session.post(running.v1 + "/images/generations", json=body) as response:
        assert response.status == 400
        assert (await response.json())["error"]["param"] == field
    assert len(mock.state.requests) == before


def _upload_head(boundary: str, model: str) -> bytes:
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n').encode()


async def test_a_model_smuggled_after_the_file_is_refused_and_charged_nothing(gateway, mock) -> None:
    # Priced as whisper-1 from the field before the file; a second model field after it
    # would make the provider run something else: the upload is stopped and refused.
    running = media_gateway(gateway, mock, [key(KEY, budget=DAY_BUDGET)])
    tail = (b"\r\n--b0\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-transcribe\r\n--b0--\r\n")
    body = _upload_head("b0", "openai/whisper-1") + wav(5.0) + tail
    status = await _raw_upload(running, {"Content-Type": "multipart/form-data; boundary=b0", "Authorization": f"Bearer {KEY}",
                                         "Content-Length": str(len(body))}, [body[i:i + 8192] for i in range(0, len(body), 8192)])
    assert status.startswith(b"HTTP/1.1 400")
    assert spent(running) == 0 and running.runtime.enforcer.reservations_in_flight == 0
    assert not any(r["path"] == "/v1/audio/transcriptions" and r.get("form") for r in mock.state.requests)


async def test_a_client_gone_mid_upload_drops_the_upstream_and_is_charged_nothing(gateway, mock) -> None:
    running = media_gateway(gateway, mock, [key(KEY, budget=DAY_BUDGET)])
    host, port = running.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
                 "Content-Type: multipart/form-data; boundary=b0\r\nContent-Length: 500000\r\n\r\n".encode()
                 + _upload_head("b0", "openai/whisper-1") + b"x" * 100_000)
    await writer.drain()
    for _ in range(200):  # until the upload reached the mock (its request is in flight)
        if mock.state.stats.in_flight:
            break
        await asyncio.sleep(0.01)
    assert running.runtime.enforcer.reservations_in_flight == 1
    writer.close()
    for _ in range(200):
        if running.runtime.enforcer.reservations_in_flight == 0 and mock.state.stats.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert running.runtime.enforcer.reservations_in_flight == 0 and mock.state.stats.in_flight == 0
    assert spent(running) == 0
    [row] = rows(running)
    assert row.status == 499 and row.route == "audio.transcriptions"


async def test_a_transcript_without_a_duration_is_charged_the_estimate(gateway, mock) -> None:
    # response_format text (or srt, vtt) carries no duration: charged the size-based estimate, not nothing.
    running = media_gateway(gateway, mock, [key(KEY, budget=DAY_BUDGET)])
    audio = wav(3.0)  # 48,044 bytes: 4 s at 16,000 bytes a second
    text = await client(running, KEY).audio.transcriptions.create(model="openai/whisper-1", response_format="text",
                                                                 file=("a.wav", audio, "audio/wav"))
    assert text.startswith("mock transcribe")
    assert spent(running) == 400_000


async def test_a_streamed_transcription_is_relayed_and_charged_its_reported_tokens(gateway, mock) -> None:
    running = media_gateway(gateway, mock, [key(KEY, budget=DAY_BUDGET)],
                            pricing={"gpt-4o-transcribe": {"input": 2.5, "output": 10, "audio_input": 6}})
    stream = await client(running, KEY).audio.transcriptions.create(
        model="openai/gpt-4o-transcribe", file=("a.wav", wav(2.0), "audio/wav"), stream=True)
    events = [event async for event in stream]
    assert events[0].type == "transcript.text.delta" and events[-1].type == "transcript.text.done"
    assert events[-1].usage.input_token_details.audio_tokens == 20
    assert spent(running) == 20 * 6_000 + 12 * 10_000  # audio tokens at the audio rate, text out at output
    [row] = rows(running)
    assert (row.route, row.stream, row.prompt_tokens, row.completion_tokens) == ("audio.transcriptions", True, 20, 12)


async def test_streamed_images_are_refused_before_the_call(gateway, mock) -> None:
    running = media_gateway(gateway, mock)
    before = len(mock.state.requests)
    with pytest.raises(openai.BadRequestError) as generated:
        await client(running).images.generate(model="openai/gpt-image-1", prompt="a", stream=True)
    with pytest.raises(openai.BadRequestError) as edited:
        await client(running).images.edit(model="openai/gpt-image-1", image=("a.png", b"\x89PNG", "image/png"),
                                          prompt="a", stream=True)
    assert generated.value.body["param"] == edited.value.body["param"] == "stream"
    assert len(mock.state.requests) == before
