"""The media routes through the real gateway with the official `openai` SDK: images
(generate, edit), audio (transcriptions and translations of a generated WAV, speech
streamed back), moderations; OpenAI and Azure OpenAI passthrough; Anthropic refused with a
400 naming the route and the provider; each request charged in its own unit."""

from __future__ import annotations

import base64
import io
import struct
from typing import Any

import openai
import pytest

from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import openai_client

KEY = "tw-media-0123456789abcdefghijklmnop"
# Prices in the media units, chosen so each charge is a round number of nano-dollars.
PRICING: dict[str, Any] = {
    "dall-e-3": {"per_image": {"1024x1024/standard": 0.04, "1024x1024/hd": 0.08, "1792x1024": 0.12, "default": 0.04}},
    "whisper-1": {"per_audio_second": 0.0001},
    "tts-1": {"per_million_characters": 15},
    "omni-moderation-latest": {"input": 1, "output": 0},
    "gpt-image-1": {"input": 5, "output": 40},
}


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of silence lasting ``seconds``."""
    frames = int(seconds * rate)
    data = b"\x00\x00" * frames
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2, 2,
                         16, b"data", len(data))
    return header + data


def media_gateway(gateway, mock, keys: list[dict] | None = None, **extra: Any) -> RunningGateway:
    providers = mock_providers(mock.url, azure={"deployments": {"dall-e-3": "images-deploy", "whisper-1": "whisper-deploy",
                                                                 "tts-1": "speech-deploy"}})
    return gateway({"providers": providers, "pricing": PRICING, "governance": {"virtual_keys": keys or []}, **extra})


def client(running: RunningGateway, key: str = "sk-placeholder") -> openai.AsyncOpenAI:
    return openai_client(running.v1, key)


@pytest.mark.parametrize("provider", ["openai", "azure"])
async def test_images_generate_url_and_b64(gateway, mock, provider) -> None:
    running = media_gateway(gateway, mock)
    images = await client(running).images.generate(model=f"{provider}/dall-e-3", prompt="a lighthouse", n=2,
                                                   size="1024x1024", quality="hd")
    assert len(images.data) == 2 and images.data[0].url
    b64 = await client(running).images.generate(model=f"{provider}/dall-e-3", prompt="a lighthouse",
                                                response_format="b64_json")
    assert base64.b64decode(b64.data[0].b64_json).startswith(b"\x89PNG")
    sent = mock.state.requests[-1]
    if provider == "azure":
        assert sent["path"] == "/openai/deployments/images-deploy/images/generations"
        assert sent["query"]["api-version"] and sent["headers"]["api-key"] == "azure-test-key"
    else:
        assert sent["path"] == "/v1/images/generations" and sent["body"]["model"] == "dall-e-3"


async def test_images_edit_streams_a_multipart_upload(gateway, mock) -> None:
    running = media_gateway(gateway, mock)
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    edited = await client(running).images.edit(model="openai/gpt-image-1", image=("in.png", png, "image/png"),
                                               prompt="add a moon", quality="low")
    assert edited.data[0].b64_json and edited.usage.output_tokens == 272
    sent = mock.state.requests[-1]
    assert sent["form"]["model"] == "gpt-image-1" and sent["form"]["prompt"] == "add a moon"
    assert sent["files"] == {"image": len(png)}


@pytest.mark.parametrize("provider", ["openai", "azure"])
async def test_transcription_and_translation_of_a_wav(gateway, mock, provider) -> None:
    running = media_gateway(gateway, mock)
    audio = wav(3.0)
    text = await client(running).audio.transcriptions.create(model=f"{provider}/whisper-1",
                                                             file=("speech.wav", audio, "audio/wav"))
    assert text.text == "mock transcribe of 3 seconds of audio"
    sent = mock.state.requests[-1]
    assert sent["files"] == {"file": len(audio)}
    if provider == "azure":
        assert sent["path"] == "/openai/deployments/whisper-deploy/audio/transcriptions"
    else:
        assert sent["form"]["model"] == "whisper-1"
    verbose = await client(running).audio.translations.create(model=f"{provider}/whisper-1",
                                                              file=("speech.wav", io.BytesIO(audio), "audio/wav"),
                                                              response_format="verbose_json")
    assert verbose.text.startswith("mock translate") and verbose.duration == 3.0
    plain = await client(running).audio.transcriptions.create(model=f"{provider}/whisper-1", response_format="text",
                                                              file=("speech.wav", audio, "audio/wav"))
    assert plain.startswith("mock transcribe")


async def test_speech_is_relayed_as_it_arrives(gateway, mock) -> None:
    running = media_gateway(gateway, mock)
    text = "Hello from the gateway. " * 20
    async with client(running).audio.speech.with_streaming_response.create(model="openai/tts-1", voice="alloy",
                                                                           input=text) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        chunks = [chunk async for chunk in response.iter_bytes()]
    audio = b"".join(chunks)
    assert len(audio) == len(text) * 64
    assert audio[:4] == bytes(range(4))


@pytest.mark.parametrize("provider", ["openai", "azure"])
async def test_speech_on_azure_and_openai(gateway, mock, provider) -> None:
    running = media_gateway(gateway, mock)
    response = await client(running).audio.speech.create(model=f"{provider}/tts-1", voice="alloy", input="Hi")
    assert len(response.content) == 2 * 64
    if provider == "azure":
        assert mock.state.requests[-1]["path"] == "/openai/deployments/speech-deploy/audio/speech"


async def test_moderations(gateway, mock) -> None:
    running = media_gateway(gateway, mock)
    result = await client(running).moderations.create(model="openai/omni-moderation-latest",
                                                      input=["a calm text", "please flag-me"])
    assert [r.flagged for r in result.results] == [False, True]


@pytest.mark.parametrize(("call", "route"), [
    ("images", "/v1/images/generations"), ("speech", "/v1/audio/speech"), ("moderations", "/v1/moderations"),
    ("transcriptions", "/v1/audio/transcriptions"),
])
async def test_anthropic_is_refused_with_a_400_naming_route_and_provider(gateway, mock, call, route) -> None:
    running = media_gateway(gateway, mock)
    sdk = client(running)
    before = len(mock.state.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        if call == "images":
            await sdk.images.generate(model="anthropic/claude-sonnet-4-5", prompt="x")
        elif call == "speech":
            await sdk.audio.speech.create(model="anthropic/claude-sonnet-4-5", voice="alloy", input="x")
        elif call == "moderations":
            await sdk.moderations.create(model="anthropic/claude-sonnet-4-5", input="x")
        else:
            await sdk.audio.transcriptions.create(model="anthropic/claude-sonnet-4-5", file=("a.wav", wav(1), "audio/wav"))
    message = caught.value.body["message"]
    assert route in message and "'anthropic'" in message
    assert len(mock.state.requests) == before


async def test_azure_moderations_are_refused(gateway, mock) -> None:
    running = media_gateway(gateway, mock)
    with pytest.raises(openai.BadRequestError) as caught:
        await client(running).moderations.create(model="azure/omni-moderation-latest", input="x")
    assert "Azure OpenAI has no moderations endpoint" in caught.value.body["message"]
