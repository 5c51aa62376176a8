"""What a media request may cost (reserved before the call) and what it did cost
(settled after), in each route's own unit. Pure: no I/O. See docs/media.md.

- images: per image (by size/quality) or tokens (gpt-image). Reserved: ``n`` images at
  their price, or ``n`` times the largest image's output tokens. Settled: the images
  returned, or the tokens reported.
- transcriptions, translations: per audio second or tokens. Reserved: the upload's size
  over a bytes-per-second floor (worst) or a typical rate (estimate). Settled: the
  response's ``usage`` or ``duration``.
- speech: per character or tokens; exact before the call, charged as reserved.
- moderations: tokens. Reserved: the input's bytes (worst) or its size over
  ``bytes_per_prompt_token`` (estimate); charged the estimate (no usage is reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tollway.config.schema import EstimateConfig, MediaConfig
from tollway.pricing import ModelPrice
from tollway.pricing_media import audio_seconds_cost, characters_cost, image_price, nano, tokens_cost
from tollway.usage import Usage

# gpt-image-1's output tokens per image, the largest in OpenAI's table (high quality, 1024×1536).
IMAGE_OUTPUT_TOKENS = 6_240
# An edit's input images: up to 16 (OpenAI's limit), each counted at the same largest figure.
MAX_EDIT_IMAGES = 16
# Token-priced transcription (gpt-4o-transcribe): audio input about 10 tokens a second
# (OpenAI: a token per 100 ms), and the transcript, counted generously, 8 tokens a second.
AUDIO_TOKENS_PER_SECOND = 10
TRANSCRIPT_TOKENS_PER_SECOND = 8
# Token-priced speech (gpt-4o-mini-tts): audio output tokens per input character, an upper
# estimate (about 21 tokens a second of audio, at about 15 characters a second).
SPEECH_TOKENS_PER_CHARACTER = 2


@dataclass(frozen=True, slots=True)
class MediaDemand:
    """Amounts a media request reserves: (tokens, nano-dollars) as estimated and at worst."""

    tokens: int
    cost_nano: int
    worst_tokens: int
    worst_cost_nano: int


@dataclass(frozen=True, slots=True)
class MediaCharge:
    """What a media request is settled at; ``detail`` says in which unit (request log)."""

    usage: Usage
    cost_nano: int
    detail: str


def image_demand(price: ModelPrice | None, n: int, size: str, quality: str, prompt_bytes: int,
                 edit: bool) -> MediaDemand:
    """``n`` images: at their per-image price, else at the token price of the largest image."""
    per_image = image_price(price, size, quality)
    if per_image is not None:
        cost = nano(per_image * n)
        return MediaDemand(0, cost, 0, cost)
    images_in = MAX_EDIT_IMAGES * IMAGE_OUTPUT_TOKENS if edit else 0
    output = n * IMAGE_OUTPUT_TOKENS
    cost = tokens_cost(price, prompt_bytes, output, image_in=images_in)
    return MediaDemand(prompt_bytes + images_in + output, cost, prompt_bytes + images_in + output, cost)


def image_charge(price: ModelPrice | None, answer: dict[str, Any] | None, n: int, size: str,
                 quality: str) -> MediaCharge:
    """The images returned at their price, or the reported tokens at the token price."""
    data = answer.get("data") if answer else None
    count = len(data) if isinstance(data, list) else n
    per_image = image_price(price, size, quality)
    usage = answer.get("usage") if answer else None
    if per_image is not None or not isinstance(usage, dict):
        tokens = _image_usage(usage)
        return MediaCharge(tokens, nano(per_image * count) if per_image is not None else 0, f"{count} images")
    details = usage.get("input_tokens_details") or {}
    text_in, image_in = _int(details.get("text_tokens")), _int(details.get("image_tokens"))
    if not details:
        text_in = _int(usage.get("input_tokens"))
    output = _int(usage.get("output_tokens"))
    return MediaCharge(_image_usage(usage), tokens_cost(price, text_in, output, image_in=image_in),
                       f"{count} images, {text_in + image_in + output} tokens")


def audio_seconds(length: int, media: MediaConfig) -> tuple[int, int]:
    """(estimated, worst) seconds of audio in an upload of ``length`` bytes."""
    worst = math.ceil(length / media.audio_min_bytes_per_second)
    if media.max_audio_seconds is not None:
        worst = min(worst, media.max_audio_seconds)
    return min(worst, math.ceil(length / media.audio_bytes_per_second)), worst


def audio_demand(price: ModelPrice | None, length: int, media: MediaConfig) -> MediaDemand:
    estimated, worst = audio_seconds(length, media)
    if audio_seconds_cost(price, 1) is not None:
        return MediaDemand(0, audio_seconds_cost(price, estimated) or 0, 0, audio_seconds_cost(price, worst) or 0)
    per_second = AUDIO_TOKENS_PER_SECOND + TRANSCRIPT_TOKENS_PER_SECOND

    def cost(seconds: int) -> int:
        return tokens_cost(price, 0, seconds * TRANSCRIPT_TOKENS_PER_SECOND,
                           audio_in=seconds * AUDIO_TOKENS_PER_SECOND)

    return MediaDemand(estimated * per_second, cost(estimated), worst * per_second, cost(worst))


def audio_charge(price: ModelPrice | None, answer: dict[str, Any] | None, estimated_seconds: int) -> MediaCharge:
    """From the response: ``usage`` of type tokens or duration, or verbose_json's
    ``duration``. A per-second price charges the duration (the estimate when the answer
    has none: text, srt, vtt); a token price the reported tokens (else tokens for the
    duration at the rates of `audio_demand`)."""
    usage = answer.get("usage") if answer else None
    tokens: tuple[int, int, int] | None = None  # audio in, text in, output
    if isinstance(usage, dict) and usage.get("type") == "tokens":
        details = usage.get("input_token_details") or {}
        audio_in, text_in = _int(details.get("audio_tokens")), _int(details.get("text_tokens"))
        if not details:
            audio_in = _int(usage.get("input_tokens"))
        tokens = (audio_in, text_in, _int(usage.get("output_tokens")))
    seconds = _number(usage.get("seconds")) if isinstance(usage, dict) and usage.get("type") == "duration" else None
    if seconds is None and answer is not None:
        seconds = _number(answer.get("duration"))
    counted = Usage(tokens[0] + tokens[1], tokens[2]) if tokens is not None else None
    if audio_seconds_cost(price, 1) is None and tokens is not None:
        cost = tokens_cost(price, tokens[1], tokens[2], audio_in=tokens[0])
        return MediaCharge(counted or Usage(), cost, f"{sum(tokens)} tokens")
    if seconds is None:
        seconds, detail = float(estimated_seconds), f"{estimated_seconds} s of audio (estimated from the upload's size)"
    else:
        detail = f"{seconds:g} s of audio"
    per_second = audio_seconds_cost(price, seconds)
    if per_second is not None:
        return MediaCharge(counted or Usage(), per_second, detail)
    whole = math.ceil(seconds)
    synthesized = Usage(whole * AUDIO_TOKENS_PER_SECOND, whole * TRANSCRIPT_TOKENS_PER_SECOND)
    cost = tokens_cost(price, 0, synthesized.completion_tokens, audio_in=synthesized.prompt_tokens)
    return MediaCharge(synthesized, cost, detail)


def speech_demand(price: ModelPrice | None, characters: int, text_bytes: int) -> MediaDemand:
    """Exact before the call for a per-character price; tokens: an upper estimate."""
    cost = characters_cost(price, characters)
    if cost is not None:
        return MediaDemand(0, cost, 0, cost)
    output = characters * SPEECH_TOKENS_PER_CHARACTER
    cost = tokens_cost(price, text_bytes, output)
    return MediaDemand(text_bytes + output, cost, text_bytes + output, cost)


def speech_charge(demand: MediaDemand, characters: int) -> MediaCharge:
    """The speech answer is audio without usage: charged what was reserved (exact per character)."""
    return MediaCharge(Usage(demand.tokens, 0) if demand.tokens else Usage(), demand.cost_nano,
                       f"{characters} characters")


def moderation_demand(price: ModelPrice | None, size: int, text_bytes: int, images: int,
                      estimates: EstimateConfig) -> MediaDemand:
    """Tokens of the input: at most its text's bytes plus a vision allowance per image."""
    worst = text_bytes + images * IMAGE_OUTPUT_TOKENS
    estimated = min(worst, max(1, size // estimates.bytes_per_prompt_token))
    return MediaDemand(estimated, tokens_cost(price, estimated, 0), worst, tokens_cost(price, worst, 0))


def _image_usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
        return None
    return float(value)
