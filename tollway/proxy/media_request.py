"""A media request, parsed as far as governance needs: the model, the fields its price
depends on (n, size, quality; the upload's size; the speech input), with 400s that name
the field. JSON bodies are read whole within ``max_body_bytes``; multipart uploads only up
to their first file (`tollway.proxy.multipart`)."""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.asgi import Receive, Scope, read_body
from tollway.config.schema import EstimateConfig, MediaConfig
from tollway.errors import bad_request
from tollway.governance.names import BadModelName, canonical_model
from tollway.pricing import ModelPrice
from tollway.providers.client import Api
from tollway.providers.media import MULTIPART_APIS
from tollway.proxy import media_cost
from tollway.proxy.media_cost import MediaCharge, MediaDemand
from tollway.proxy.multipart import Upload, read_head
from tollway.usage import Usage

_MAX_IMAGES = 10  # OpenAI's limit on `n`
_NO_IMAGE_STREAMS = ("streamed images ('stream': true, partial images) are not served by this gateway: their usage "
                     "is not metered; send the request without stream")
_JSON = "application/json"


@dataclass(slots=True)
class MediaRequest:
    api: Api
    model: str
    content_type: str
    size: int  # bytes of the body
    body: dict[str, Any] | None = None  # JSON routes
    upload: Upload | None = None  # multipart routes
    stream: bool = False
    tags: tuple[str, ...] = ()  # from x-tollway-tags (`tollway.proxy.request_tags`)
    _demand: MediaDemand | None = None
    _price: ModelPrice | None = None
    _media: MediaConfig | None = None

    @property
    def relayed(self) -> bool:
        """Whether the answer is relayed as it arrives (speech audio, a streamed transcription)."""
        return self.api is Api.AUDIO_SPEECH or self.stream

    def field(self, name: str) -> Any:
        if self.body is not None:
            return self.body.get(name)
        return self.upload.text(name) if self.upload is not None else None

    def demand(self, price: ModelPrice | None, estimates: EstimateConfig, media: MediaConfig) -> MediaDemand:
        api = self.api
        if api in (Api.IMAGES_GENERATIONS, Api.IMAGES_EDITS):
            demand = media_cost.image_demand(price, self._n(), self._str("size"), self._str("quality"),
                                             len(self._str("prompt").encode()), api is Api.IMAGES_EDITS)
        elif api in (Api.AUDIO_TRANSCRIPTIONS, Api.AUDIO_TRANSLATIONS):
            demand = media_cost.audio_demand(price, self.size, media)
        elif api is Api.AUDIO_SPEECH:
            text = self._str("input")
            demand = media_cost.speech_demand(price, len(text), len(text.encode()) + len(self._str("instructions").encode()))
        else:
            text_bytes, images = _moderation_input(self.field("input"))
            demand = media_cost.moderation_demand(price, self.size, text_bytes, images, estimates)
        self._demand, self._price, self._media = demand, price, media
        return demand

    def charge(self, answer: dict[str, Any] | None, data: bytes | None) -> MediaCharge:
        """What the answer costs (``data``: its bytes, or the tail of a relayed one)."""
        demand = self._demand
        assert demand is not None  # `demand` came first
        api = self.api
        if api in (Api.IMAGES_GENERATIONS, Api.IMAGES_EDITS):
            return media_cost.image_charge(self._price, answer, self._n(), self._str("size"), self._str("quality"))
        if api in (Api.AUDIO_TRANSCRIPTIONS, Api.AUDIO_TRANSLATIONS):
            if self.stream and data:
                answer = {"usage": _last_usage(data)}
            assert self._media is not None
            return media_cost.audio_charge(self._price, answer, media_cost.audio_seconds(self.size, self._media)[0])
        if api is Api.AUDIO_SPEECH:
            return media_cost.speech_charge(demand, len(self._str("input")))
        return self.estimated_charge()

    def estimated_charge(self) -> MediaCharge:
        """The reservation's estimate, as a charge."""
        demand = self._demand
        assert demand is not None
        return MediaCharge(Usage(demand.tokens, 0), demand.cost_nano, "estimated")

    def upstream_body(self, model: str, limit: int) -> tuple[bytes | AsyncIterable[bytes], int]:
        """The body for the provider, with its model name, and its length."""
        if self.body is not None:
            data = orjson.dumps({**self.body, "model": model})
            return data, len(data)
        upload = self.upload
        assert upload is not None
        head = upload.rewritten_head("model", model)
        length = upload.length - len(upload.head) + len(head)
        if upload.complete:
            return head, length
        return upload.body(head, limit), length

    def _n(self) -> int:
        value = self.field("n")
        if value is None:
            return 1
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_IMAGES:
            raise bad_request(f"'n' must be an integer from 1 to {_MAX_IMAGES}", "n")
        return value

    def _str(self, name: str) -> str:
        value = self.field(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise bad_request(f"'{name}' must be a string", name)
        return value


async def parse_media_request(api: Api, scope: Scope, receive: Receive, max_body: int, max_upload: int) -> MediaRequest:
    """The request, or a 400 naming the field that is wrong (413 past the size limits)."""
    if api in MULTIPART_APIS:
        upload = await read_head(scope, receive, max_upload)
        request = MediaRequest(api, _model(upload.text("model")), upload.content_type, upload.length, upload=upload)
        if upload.files == 0 and upload.complete:
            raise bad_request("the upload has no file part ('file' for audio, 'image' for image edits)",
                              "image" if api is Api.IMAGES_EDITS else "file")
        request.stream = (upload.text("stream") or "").strip().lower() == "true"
        if request.stream and api is Api.IMAGES_EDITS:
            raise bad_request(_NO_IMAGE_STREAMS, "stream")
    else:
        raw = await read_body(scope, receive, max_body)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object")
        request = MediaRequest(api, _model(body.get("model")), _JSON, len(raw), body=body)
        _check_json_fields(api, body)
        if body.get("stream") is not None and not isinstance(body.get("stream"), bool):
            raise bad_request("'stream' must be true or false", "stream")
        request.stream = api is not Api.AUDIO_SPEECH and body.get("stream") is True
    return request


def _model(value: Any) -> str:
    if value is None:
        raise bad_request("missing required field 'model'", "model")
    if not isinstance(value, str):
        raise bad_request("'model' must be a non-empty string", "model")
    try:
        return canonical_model(value)
    except BadModelName as exc:
        raise bad_request(str(exc), "model") from None


def _check_json_fields(api: Api, body: dict[str, Any]) -> None:
    required = {Api.IMAGES_GENERATIONS: "prompt", Api.AUDIO_SPEECH: "input", Api.MODERATIONS: "input"}[api]
    if required not in body:
        raise bad_request(f"missing required field '{required}'", required)
    if api is not Api.MODERATIONS and not isinstance(body[required], str):
        raise bad_request(f"'{required}' must be a string", required)
    if api is Api.IMAGES_GENERATIONS and body.get("stream") is True:
        raise bad_request(_NO_IMAGE_STREAMS, "stream")


def _moderation_input(value: Any) -> tuple[int, int]:
    """(UTF-8 bytes of text, images) of a moderation input: a string, strings, or parts."""
    if isinstance(value, str):
        return len(value.encode()), 0
    if not isinstance(value, list):
        raise bad_request("'input' must be a string or an array of strings or input parts", "input")
    text, images = 0, 0
    for item in value:
        if isinstance(item, str):
            text += len(item.encode())
        elif isinstance(item, dict) and item.get("type") == "image_url":
            images += 1
        elif isinstance(item, dict):
            text += len(orjson.dumps(item))
        else:
            raise bad_request("'input' must be a string or an array of strings or input parts", "input")
    return text, images


def _last_usage(tail: bytes) -> Any:
    """The ``usage`` of the last event that has one in a stream's tail (a streamed
    transcription reports it in ``transcript.text.done``)."""
    for line in reversed(tail.split(b"\n")):
        if line.startswith(b"data:") and b'"usage"' in line:
            try:
                event = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and isinstance(event.get("usage"), dict):
                return event["usage"]
    return None
