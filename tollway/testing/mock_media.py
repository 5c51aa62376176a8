"""The media routes of the mock upstream, OpenAI's and Azure's (`/openai/deployments/{d}/...`):
images (generations as JSON with ``b64_json`` or ``url``; edits, multipart), audio
(transcriptions and translations, multipart, answering ``usage`` of type duration for
whisper models and of type tokens for gpt-4o transcribe models, ``duration`` in
verbose_json, plain text for text/srt/vtt, events with ``stream=true``; speech, a binary body sent in chunks) and
moderations. Faults queued for a path apply as on every route (`mock_http.endpoint`).

Audio durations are read from a WAV upload's header (the tests generate WAVs); other
formats count 16,000 bytes a second.
"""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import struct
import time
from typing import Any

from aiohttp import web

from tollway.testing.mock_http import MockCall, bearer_token, endpoint, error_response, send_json, send_sse, sse_data

_PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
_SPEECH_CHUNK = 4096
_BYTES_PER_SECOND = 16_000
# gpt-image-1 output tokens per image by quality (OpenAI's table, 1024×1024).
_IMAGE_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 1056}


def add_media_routes(app: web.Application) -> None:
    router = app.router
    for prefix in ("/v1", "/openai/deployments/{deployment}"):
        router.add_post(f"{prefix}/images/generations", endpoint(images_generations, "openai"))
        router.add_post(f"{prefix}/images/edits", endpoint(images_edits, "openai"))
        router.add_post(f"{prefix}/audio/transcriptions", endpoint(transcriptions, "openai"))
        router.add_post(f"{prefix}/audio/translations", endpoint(translations, "openai"))
        router.add_post(f"{prefix}/audio/speech", endpoint(speech, "openai"))
    router.add_post("/v1/moderations", endpoint(moderations, "openai"))


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    return error_response("openai", status, message, param=param)


def _auth(call: MockCall) -> web.Response | None:
    deployment = call.request.match_info.get("deployment")
    if deployment is not None:
        if not (call.header("api-key") or bearer_token(call)):
            return _error(401, "Access denied due to missing subscription key.")
        if not call.request.query.get("api-version"):
            return _error(400, "The api-version query parameter (?api-version=) is required.", "api-version")
    elif not bearer_token(call):
        return _error(401, "You didn't provide an API key.")
    return None


def parse_form(call: MockCall) -> tuple[dict[str, str], dict[str, bytes]]:
    """(text fields, file contents by field name; repeated names get ``[i]``) of a multipart body."""
    head = f"Content-Type: {call.header('content-type')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + call.raw)
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition") or ""
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            key = name if name not in files else f"{name}[{len(files)}]"
            files[key] = payload
        else:
            fields[name] = payload.decode("utf-8", "replace")
    call.record["form"] = fields
    call.record["files"] = {name: len(data) for name, data in files.items()}
    return fields, files


def _model(call: MockCall, given: Any) -> str | web.Response:
    model = call.request.match_info.get("deployment") or given
    if not isinstance(model, str) or not model:
        return _error(400, "you must provide a model parameter", "model")
    return model


def _images(call: MockCall, model: str, n: int, quality: str, response_format: str) -> dict[str, Any]:
    item = ({"b64_json": base64.b64encode(_PNG_1PX).decode()} if response_format == "b64_json"
            else {"url": f"https://mock.invalid/images/{call.state.next_id()}.png"})
    answer: dict[str, Any] = {"created": int(time.time()), "data": [dict(item) for _ in range(n)]}
    if model.startswith("gpt-image"):
        output = n * _IMAGE_TOKENS.get(quality or "auto", 1056)
        answer["usage"] = {"input_tokens": 50, "output_tokens": output, "total_tokens": 50 + output,
                           "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}}
    return answer


async def images_generations(call: MockCall) -> web.StreamResponse:
    refused = _auth(call)
    if refused is not None:
        return refused
    body = call.body if isinstance(call.body, dict) else {}
    model = _model(call, body.get("model"))
    if isinstance(model, web.Response):
        return model
    if not isinstance(body.get("prompt"), str):
        return _error(400, "Missing required parameter: 'prompt'.", "prompt")
    fmt = body.get("response_format") or ("b64_json" if model.startswith("gpt-image") else "url")
    return await send_json(call, _images(call, model, int(body.get("n") or 1), body.get("quality") or "", fmt))


async def images_edits(call: MockCall) -> web.StreamResponse:
    refused = _auth(call)
    if refused is not None:
        return refused
    fields, files = parse_form(call)
    model = _model(call, fields.get("model"))
    if isinstance(model, web.Response):
        return model
    if not any(name.startswith("image") for name in files):
        return _error(400, "Missing required parameter: 'image'.", "image")
    fmt = fields.get("response_format") or ("b64_json" if model.startswith("gpt-image") else "url")
    return await send_json(call, _images(call, model, int(fields.get("n") or 1), fields.get("quality", ""), fmt))


def audio_seconds(data: bytes) -> float:
    """A WAV's duration from its header; other data at 16,000 bytes a second."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        at = 12
        byte_rate = 0
        while at + 8 <= len(data):
            chunk, size = data[at:at + 4], struct.unpack("<I", data[at + 4:at + 8])[0]
            if chunk == b"fmt ":
                byte_rate = struct.unpack("<I", data[at + 16:at + 20])[0]
            elif chunk == b"data" and byte_rate:
                return round(min(size, len(data) - at - 8) / byte_rate, 3)
            at += 8 + size
    return round(len(data) / _BYTES_PER_SECOND, 3)


async def _audio(call: MockCall, task: str) -> web.StreamResponse:
    refused = _auth(call)
    if refused is not None:
        return refused
    fields, files = parse_form(call)
    model = _model(call, fields.get("model"))
    if isinstance(model, web.Response):
        return model
    audio = files.get("file")
    if audio is None:
        return _error(400, "Missing required parameter: 'file'.", "file")
    seconds = audio_seconds(audio)
    text = f"mock {task} of {seconds:g} seconds of audio"
    fmt = fields.get("response_format") or "json"
    if fmt in ("text", "srt", "vtt"):
        return web.Response(text=text, content_type="text/plain")
    if "transcribe" in model:
        audio_tokens = max(1, round(seconds * 10))
        usage: dict[str, Any] = {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": 12,
                                 "total_tokens": audio_tokens + 12,
                                 "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0}}
    else:
        usage = {"type": "duration", "seconds": max(1, round(seconds))}
    if fields.get("stream") == "true":  # gpt-4o transcribe models: the text as events, usage in the last
        words = text.split(" ")
        events = [sse_data({"type": "transcript.text.delta", "delta": word + " "}) for word in words]
        events.append(sse_data({"type": "transcript.text.done", "text": text, "usage": usage}))
        return await send_sse(call, events)
    answer: dict[str, Any] = {"text": text, "usage": usage}
    if fmt == "verbose_json":
        answer = {"task": task, "language": "english", "duration": seconds, "text": text, "segments": []}
    return await send_json(call, answer)


async def transcriptions(call: MockCall) -> web.StreamResponse:
    return await _audio(call, "transcribe")


async def translations(call: MockCall) -> web.StreamResponse:
    return await _audio(call, "translate")


async def speech(call: MockCall) -> web.StreamResponse:
    """Audio bytes (a deterministic pattern, 64 bytes per input character) in chunks,
    honouring `chunk_delay_ms` and `mid_stream` faults."""
    refused = _auth(call)
    if refused is not None:
        return refused
    body = call.body if isinstance(call.body, dict) else {}
    model = _model(call, body.get("model"))
    if isinstance(model, web.Response):
        return model
    text = body.get("input")
    if not isinstance(text, str) or not text:
        return _error(400, "Missing required parameter: 'input'.", "input")
    audio = bytes(range(256)) * (len(text) // 4 + 1)
    audio = audio[: len(text) * 64]
    fmt = body.get("response_format") or "mp3"
    response = web.StreamResponse(headers={"Content-Type": f"audio/{'mpeg' if fmt == 'mp3' else fmt}"})
    await response.prepare(call.request)
    delay = call.state.settings.chunk_delay_ms / 1000
    for index, start in enumerate(range(0, len(audio), _SPEECH_CHUNK)):
        if call.drop_after is not None and index >= call.drop_after:
            if call.request.transport is not None:
                call.request.transport.abort()
            return response
        if delay:
            await asyncio.sleep(delay)
        await response.write(audio[start:start + _SPEECH_CHUNK])
    await response.write_eof()
    return response


async def moderations(call: MockCall) -> web.StreamResponse:
    refused = _auth(call)
    if refused is not None:
        return refused
    body = call.body if isinstance(call.body, dict) else {}
    if "input" not in body:
        return _error(400, "Missing required parameter: 'input'.", "input")
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    results = []
    for item in inputs:
        flagged = isinstance(item, str) and "flag-me" in item
        categories = {"violence": flagged, "harassment": False, "hate": False, "self-harm": False, "sexual": False}
        results.append({"flagged": flagged, "categories": categories,
                        "category_scores": {name: 0.99 if hit else 0.001 for name, hit in categories.items()},
                        "category_applied_input_types": {name: ["text"] for name in categories}})
    return await send_json(call, {"id": f"modr-mock{call.state.next_id()}",
                                  "model": body.get("model") or "omni-moderation-latest", "results": results})
