"""What a request costs, in integer nano-dollars, from configured or genai-prices prices."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import genai_prices
from genai_prices import types as gp

from tollway.governance.names import model_key
from tollway.providers.adapters import ADAPTERS
from tollway.usage import Usage

__all__ = ["NANO_PER_USD", "RATE_SCALE", "MediaPrice", "ModelPrice", "PriceCatalog", "ReservationRates", "estimate_cost_nano",
           "parse_price", "scaled_cost"]

NANO_PER_USD = 1_000_000_000
_NANO_PER_TOKEN = Decimal(NANO_PER_USD) / Decimal(1_000_000)  # per (USD per million tokens)
# Per-token rates are kept as integers in units of 10**-12 nano-dollars, so a cost is
# four integer multiplications; exact for any price with up to 15 decimal places.
_SCALE = 10**12
RATE_SCALE = _SCALE
_MAX_MEMO = 10_000  # model names come from clients; bound the memo rather than grow forever
_EMPTY_USAGE = genai_prices.Usage()
_FIELDS = ("input", "output", "cached_input", "cache_write")


@dataclass(frozen=True, slots=True)
class MediaPrice:
    """The media routes' own units (USD): per image (keyed ``SIZE/QUALITY``, ``SIZE``,
    ``QUALITY`` or ``default``), per second of audio, per million characters of speech,
    and per million audio input tokens (token-priced transcription)."""

    per_image: Mapping[str, Decimal] | None = None
    per_audio_second: Decimal | None = None
    per_million_characters: Decimal | None = None
    audio_input: Decimal | None = None
    image_input: Decimal | None = None  # USD per million image input tokens (gpt-image); default: input


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens; ``None`` cache prices mean "same as input". ``media``: the
    media units, where the model has them; ``tokens``: whether it has token prices at all."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    media: MediaPrice | None = None
    tokens: bool = True


@dataclass(frozen=True, slots=True)
class _Priced:
    price: ModelPrice | None
    rates: tuple[int, int, int, int]  # uncached input, cached input, cache write, output


_FREE = (0, 0, 0, 0)
_MAX_UNPRICED_WARNINGS = 50


@dataclass(frozen=True, slots=True)
class ReservationRates:
    """Per-token rates (in 10**-12 nano-dollars) that a reservation is priced at:
    ``input`` for an estimate, ``worst_input`` (the dearest of uncached, cached and
    cache-write input) for a worst case, and ``output``."""

    input: int
    worst_input: int
    output: int


def scaled_cost(scaled: int) -> int:
    """Nano-dollars of a sum of tokens × rates, rounded up as `PriceCatalog.cost_nano` does."""
    return -(-scaled // _SCALE)


class PriceCatalog:
    """Resolves a model's price once (overrides, then genai-prices, then a default) and charges usage."""

    def __init__(
        self,
        overrides: Mapping[str, ModelPrice] | None = None,
        default: ModelPrice | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """``overrides`` are keyed ``"provider/model"`` or a bare ``"model"`` (any provider),
        matched without regard to case (`model_key`)."""
        self._overrides = {model_key(name): price for name, price in (overrides or {}).items()}
        self._default = default
        self._log = logger or logging.getLogger(__name__)
        self._memo: dict[tuple[str, str, str], _Priced] = {}
        self._unpriced_warnings = 0

    def price_for(self, provider_type: str, provider_name: str, model: str) -> ModelPrice | None:
        """The model's price, or ``None`` when nothing is known (it is then charged nothing)."""
        return self._priced(provider_type, provider_name, model).price

    def reservation_rates(self, provider_type: str, provider_name: str, model: str) -> ReservationRates | None:
        """The rates a reservation for ``model`` is priced at; None when it has no known price."""
        priced = self._priced(provider_type, provider_name, model)
        if priced.price is None:
            return None
        r_input, r_cached, r_write, r_output = priced.rates
        return ReservationRates(r_input, max(r_input, r_cached, r_write), r_output)

    def cost_nano(self, provider_type: str, provider_name: str, model: str, usage: Usage) -> int:
        """Cost of ``usage`` in nano-dollars, rounded up so that nothing priced is ever free."""
        r_input, r_cached, r_write, r_output = self._priced(provider_type, provider_name, model).rates
        uncached = max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
        scaled = (uncached * r_input + usage.cached_tokens * r_cached
                  + usage.cache_write_tokens * r_write + usage.completion_tokens * r_output)
        return -(-scaled // _SCALE)

    def _priced(self, provider_type: str, provider_name: str, model: str) -> _Priced:
        key = (provider_type, provider_name, model)
        priced = self._memo.get(key)
        if priced is None:
            priced = self._resolve(provider_type, provider_name, model)
            if len(self._memo) >= _MAX_MEMO:
                self._memo.clear()
            self._memo[key] = priced
        return priced

    def _resolve(self, provider_type: str, provider_name: str, model: str) -> _Priced:
        key = model_key(model)
        price = (self._overrides.get(model_key(provider_name) + "/" + key) or self._overrides.get(key)
                 or _lookup_genai(provider_type, model) or (key != model and _lookup_genai(provider_type, key))
                 or self._default)
        if price is None:
            # A client picks the model name: after a few, unpriced names are not logged one
            # by one (made-up names sent without a key must not flood the log).
            self._unpriced_warnings += 1
            if self._unpriced_warnings > _MAX_UNPRICED_WARNINGS:
                if self._unpriced_warnings == _MAX_UNPRICED_WARNINGS + 1:
                    self._log.warning("more models without a price: no longer logged one by one (default_price: prices them all)")
                return _Priced(None, _FREE)
            self._log.warning(
                "no price known for model %r on provider %r: its requests are charged nothing. "
                "Set one in the config's pricing: section (USD per million tokens, keyed "
                "'provider/model' or 'model', e.g. %r: {input: 0.15, output: 0.60}) or set default_price:",
                model, provider_name, f"{provider_name}/{model}",
            )
            return _Priced(None, _FREE)
        return _Priced(price, _rates(price))


def estimate_cost_nano(price: ModelPrice | None, prompt_tokens: int, completion_tokens: int) -> int:
    """Cost estimate for a reservation: prompt tokens at the input price, completion at output, rounded up."""
    if price is None:
        return 0
    return math.ceil((prompt_tokens * price.input + completion_tokens * price.output) * _NANO_PER_TOKEN)


def parse_price(d: Mapping[str, object]) -> ModelPrice:
    """Build a ``ModelPrice`` from a config mapping such as ``{input: 0.15, output: 0.60}``."""
    if not isinstance(d, Mapping):
        raise ValueError(f"a price must be a mapping of {', '.join(_FIELDS)}, got {type(d).__name__}")
    unknown = sorted(str(k) for k in d if k not in _FIELDS)
    if unknown:
        raise ValueError(f"unknown price field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    for required in ("input", "output"):
        if d.get(required) is None:
            raise ValueError(f"price field {required!r} is required (USD per million tokens)")
    values = {name: _parse_amount(name, d[name]) for name in _FIELDS if d.get(name) is not None}
    return ModelPrice(values["input"], values["output"], values.get("cached_input"), values.get("cache_write"))


def _parse_amount(name: str, value: object) -> Decimal:
    bad = ValueError(f"price field {name!r} must be a non-negative number (USD per million tokens), got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise bad
    try:
        amount = Decimal(str(value))  # str() so 0.15 stays 0.15, not its binary expansion
    except InvalidOperation:
        raise bad from None
    if not amount.is_finite() or amount < 0:
        raise bad
    return amount


def _rates(price: ModelPrice) -> tuple[int, int, int, int]:
    per_token = _NANO_PER_TOKEN * _SCALE
    cached = price.input if price.cached_input is None else price.cached_input
    write = price.input if price.cache_write is None else price.cache_write
    return (math.ceil(price.input * per_token), math.ceil(cached * per_token),
            math.ceil(write * per_token), math.ceil(price.output * per_token))


def _genai_providers(provider_type: str) -> tuple[str | None, ...]:
    # The adapter knows its catalog ids (azure falls back to OpenAI's table, a preset has
    # its own id); a type no adapter knows is tried as a catalog id, then by model name alone.
    adapter = ADAPTERS.get(provider_type.lower())
    return adapter.price_catalog_ids if adapter is not None else (provider_type.lower(), None)


def load_genai_catalog() -> None:
    """Load genai-prices' catalog now. It loads on its first lookup otherwise: 25 ms and
    some 16,000 objects on the first priced request's path, made after the runtime froze
    what lives as long as the process out of the collector's scans (`gc.freeze`), so every
    full collection scanned them again."""
    try:
        genai_prices.calc_price(_EMPTY_USAGE, "gpt-4o", provider_id="openai")
    except (LookupError, ValueError):  # a catalog without the model: loaded all the same
        pass


def _lookup_genai(provider_type: str, model: str) -> ModelPrice | None:
    """The model's current base-tier price in genai-prices, or ``None``. Slow: memoise the result."""
    for provider_id in _genai_providers(provider_type):
        try:
            info = genai_prices.calc_price(_EMPTY_USAGE, model, provider_id=provider_id).model
        except (LookupError, ValueError):  # unknown provider id or model; bad data
            continue
        prices = [p for p in map(_from_genai, _current_prices(info, datetime.now(UTC))) if p is not None]
        return max(prices, key=lambda p: p.input + p.output, default=None)
    return None


def _current_prices(info: gp.ModelInfo, now: datetime) -> list[gp.ModelPrice]:
    """The price in force by date, plus any time-of-day prices (peak hours)."""
    if isinstance(info.prices, gp.ModelPrice):
        return [info.prices]
    by_date = next((c.prices for c in reversed(info.prices) if c.constraint is None
                    or (isinstance(c.constraint, gp.StartDateConstraint) and c.constraint.active(now))),
                   info.prices[0].prices)
    # A memoised price cannot follow the clock through the day, so the dearest window is
    # charged (DeepSeek's peak hours): budgets err towards over-, never under-charging.
    return [by_date] + [c.prices for c in info.prices if isinstance(c.constraint, gp.TimeOfDateConstraint)]


def _from_genai(prices: gp.ModelPrice) -> ModelPrice | None:
    def base(key: str) -> Decimal | None:
        value = getattr(prices, key, None)
        return value.base if isinstance(value, gp.TieredPrices) else value

    input_, output = base("input_mtok"), base("output_mtok")
    hours, chars = base("input_audio_hours") or base("audio_hours"), base("input_mchars")
    audio_in, image_in = base("input_audio_mtok"), base("input_image_mtok")
    media = None
    if any(unit is not None for unit in (hours, chars, audio_in, image_in)):
        media = MediaPrice(per_audio_second=hours / 3600 if hours is not None else None, per_million_characters=chars,
                           audio_input=audio_in, image_input=image_in)
    if input_ is None and output is None:
        # Priced per request or image only (nothing the gateway can count), or in a media unit.
        return ModelPrice(Decimal(0), Decimal(0), media=media, tokens=False) if media is not None else None
    return ModelPrice(input_ or Decimal(0), output or Decimal(0), base("cache_read_mtok"), base("cache_write_mtok"),
                      media=media)
