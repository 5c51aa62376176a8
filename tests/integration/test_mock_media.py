"""The mock provider's media routes, called directly with the `openai` SDK: images (url and
b64_json, usage for gpt-image), audio (multipart uploads parsed, durations from the WAV,
usage of type duration or tokens), speech (binary, in chunks), moderations, Azure's
deployment routes, and the fault injection every route has."""

from __future__ import annotations

import base64

import aiohttp
import openai
import pytest

from tests.integration.test_media_routes import wav
from tests.integration.test_mock_upstream import add_fault
from tests.support.sdk_clients import azure_client


async def test_images_in_both_formats_and_gpt_image_usage(oai: openai.AsyncOpenAI) -> None:
    urls = await oai.images.generate(model="dall-e-3", prompt="a", n=3)
    assert len(urls.data) == 3 and all(item.url for item in urls.data) and urls.usage is None
    tokens = await oai.images.generate(model="gpt-image-1", prompt="a", quality="high")
    assert base64.b64decode(tokens.data[0].b64_json).startswith(b"\x89PNG")
    assert tokens.usage.output_tokens == 4160 and tokens.usage.input_tokens_details.text_tokens == 50


async def test_an_image_edit_is_parsed_as_multipart(oai: openai.AsyncOpenAI, mock) -> None:
    await oai.images.edit(model="gpt-image-1", image=[("a.png", b"\x89PNG-a", "image/png"),
                                                      ("b.png", b"\x89PNG-bb", "image/png")], prompt="merge")
    record = mock.state.requests[-1]
    assert record["form"]["prompt"] == "merge" and record["form"]["model"] == "gpt-image-1"
    assert sorted(record["files"].values()) == [6, 7]


async def test_transcriptions_report_the_wavs_duration(oai: openai.AsyncOpenAI) -> None:
    whisper = await oai.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(2.0), "audio/wav"))
    assert whisper.usage.type == "duration" and whisper.usage.seconds == 2
    tokens = await oai.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.wav", wav(2.0), "audio/wav"))
    assert tokens.usage.type == "tokens" and tokens.usage.input_token_details.audio_tokens == 20
    verbose = await oai.audio.translations.create(model="whisper-1", file=("a.wav", wav(1.5), "audio/wav"),
                                                  response_format="verbose_json")
    assert verbose.duration == 1.5


async def test_an_upload_without_its_file_is_a_400(mock, http) -> None:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("model", "whisper-1")
    form.add_field("language", "en")
    async with http.post(mock.url + "/v1/audio/transcriptions", data=form,
                         headers={"Authorization": "Bearer k"}) as response:
        assert response.status == 400 and (await response.json())["error"]["param"] == "file"


async def test_speech_is_binary_and_moderations_flag(oai: openai.AsyncOpenAI) -> None:
    speech = await oai.audio.speech.create(model="tts-1", voice="alloy", input="Hello", response_format="wav")
    assert len(speech.content) == 5 * 64 and speech.response.headers["content-type"] == "audio/wav"
    moderation = await oai.moderations.create(model="omni-moderation-latest", input=["fine", "flag-me now"])
    assert [result.flagged for result in moderation.results] == [False, True]
    assert moderation.results[1].categories.violence is True


async def test_azure_media_routes_need_the_api_version(mock, http) -> None:
    azure = azure_client(mock.url, "k", "2024-06-01")
    image = await azure.images.generate(model="images-deploy", prompt="a")
    assert image.data[0].url
    assert mock.state.requests[-1]["path"] == "/openai/deployments/images-deploy/images/generations"
    async with http.post(mock.url + "/openai/deployments/d/audio/speech", json={"input": "x"},
                         headers={"api-key": "k"}) as response:
        assert response.status == 400 and (await response.json())["error"]["param"] == "api-version"


async def test_faults_apply_to_media_routes(oai: openai.AsyncOpenAI, http, mock) -> None:
    await add_fault(http, mock, status=429, path="/audio/", retry_after=1)
    with pytest.raises(openai.RateLimitError):
        await oai.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(1.0), "audio/wav"))
    await add_fault(http, mock, drop="mid_stream", after_chunks=1, path="/audio/speech")
    with pytest.raises(Exception, match="incomplete|peer closed"):
        async with oai.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy",
                                                                   input="x" * 500) as response:
            await response.read()
    images = await oai.images.generate(model="dall-e-3", prompt="a")  # faults are consumed: back to normal
    assert images.data
