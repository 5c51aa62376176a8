"""Prices of the media routes in their own units: per image, per audio second, per
character (docs/media.md). Pure: integer nano-dollars out, rounded up like token costs."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from tollway.pricing import NANO_PER_USD, MediaPrice, ModelPrice

_MILLION = Decimal(1_000_000)


def media_price(config: Any) -> MediaPrice | None:
    """The media units of a `PriceConfig` (None when it sets none)."""
    per_image = config.per_image
    if isinstance(per_image, Decimal):
        per_image = {"default": per_image}
    if per_image is None and config.per_audio_second is None and config.per_million_characters is None \
            and config.audio_input is None:
        return None
    if per_image is not None:
        per_image = {name.strip().lower(): price for name, price in per_image.items()}
    return MediaPrice(per_image=per_image,
                      per_audio_second=config.per_audio_second,
                      per_million_characters=config.per_million_characters, audio_input=config.audio_input)


def nano(usd: Decimal) -> int:
    """USD as nano-dollars, rounded up (nothing priced is ever free)."""
    return math.ceil(usd * NANO_PER_USD)


def image_price(price: ModelPrice | None, size: str, quality: str) -> Decimal | None:
    """USD for one image of ``size`` and ``quality``: keyed ``SIZE/QUALITY``, ``SIZE``,
    ``QUALITY``, then ``default``; None when the model has no per-image price."""
    table = price.media.per_image if price is not None and price.media is not None else None
    if not table:
        return None
    size, quality = size.strip().lower(), quality.strip().lower()  # as the provider reads them
    for key in (f"{size}/{quality}", size, quality, "default"):
        found = table.get(key)
        if found is not None:
            return found
    return max(table.values())  # a size or quality the table does not name: its dearest price, never free


def dearest_image(price: ModelPrice | None) -> Decimal | None:
    """The dearest per-image price of the model (a worst case for a size the request leaves out)."""
    table = price.media.per_image if price is not None and price.media is not None else None
    return max(table.values()) if table else None


def audio_seconds_cost(price: ModelPrice | None, seconds: float) -> int | None:
    """Nano-dollars for ``seconds`` of audio; None when the model has no per-second price."""
    rate = price.media.per_audio_second if price is not None and price.media is not None else None
    return None if rate is None else nano(rate * Decimal(str(seconds)))


def characters_cost(price: ModelPrice | None, characters: int) -> int | None:
    """Nano-dollars for ``characters`` of speech input; None when the model has no such price."""
    rate = price.media.per_million_characters if price is not None and price.media is not None else None
    return None if rate is None else nano(rate * characters / _MILLION)


def tokens_cost(price: ModelPrice | None, text_in: int, output: int, audio_in: int = 0, image_in: int = 0) -> int:
    """Nano-dollars for tokens: text and image input at ``input``, audio input at
    ``audio_input`` (else ``input``), output at ``output``; 0 for a model without token prices."""
    if price is None or not price.tokens:
        return 0
    media = price.media
    audio_rate = media.audio_input if media is not None and media.audio_input is not None else price.input
    image_rate = media.image_input if media is not None and media.image_input is not None else price.input
    usd = (text_in * price.input + image_in * image_rate + audio_in * audio_rate + output * price.output) / _MILLION
    return nano(usd)
