"""What the price catalog says about batches: the batch price (a share of the standard one)
and, for a request that sets no output cap, the model's context window (no answer can be
longer, so it bounds the output the gateway charges for).

Providers price batch requests at a discount (OpenAI and Anthropic: half). The catalog
(genai-prices) lists it as a price variant ``processing: batch``; a `pricing:` override's
``batch_ratio`` wins over it, and a model with neither is charged the full price (never
less than the provider may bill).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal

import genai_prices
from genai_prices import types as gp

from tollway.governance.names import model_key
from tollway.providers.adapters import ADAPTERS

FULL_PRICE = Decimal(1)
_EMPTY_USAGE = genai_prices.Usage(input_tokens=0, output_tokens=0)


class BatchPrices:
    """Batch ratios and context windows, looked up once per (provider, model)."""

    def __init__(self, ratios: Mapping[str, Decimal]) -> None:
        """``ratios``: the `pricing:` overrides' ``batch_ratio``, keyed ``provider/model`` or ``model``."""
        self._ratios = {model_key(name): ratio for name, ratio in ratios.items()}
        self._memo: dict[tuple[str, str, str], tuple[Decimal, int | None]] = {}

    def ratio(self, provider_type: str, provider_name: str, model: str) -> Decimal:
        """The share of the standard price a batch request of ``model`` costs."""
        return self._entry(provider_type, provider_name, model)[0]

    def context_window(self, provider_type: str, provider_name: str, model: str) -> int | None:
        """The model's context window in tokens, where the catalog knows it."""
        return self._entry(provider_type, provider_name, model)[1]

    def _entry(self, provider_type: str, provider_name: str, model: str) -> tuple[Decimal, int | None]:
        memo_key = (provider_type, provider_name, model)
        found = self._memo.get(memo_key)
        if found is None:
            info = _catalog_model(provider_type, model)
            override = self._ratios.get(f"{model_key(provider_name)}/{model_key(model)}") or self._ratios.get(
                model_key(model))
            ratio = override or (_catalog_ratio(info) if info is not None else None) or FULL_PRICE
            found = self._memo[memo_key] = (ratio, info.context_window if info is not None else None)
        return found


def at_ratio(cost_nano: int, ratio: Decimal) -> int:
    """``cost_nano`` at the batch ``ratio``, rounded up (nothing priced is ever free)."""
    return math.ceil(cost_nano * ratio)


def _catalog_model(provider_type: str, model: str) -> gp.ModelInfo | None:
    adapter = ADAPTERS.get(provider_type.lower())
    for provider_id in adapter.price_catalog_ids if adapter is not None else (None,):
        try:
            return genai_prices.calc_price(_EMPTY_USAGE, model, provider_id=provider_id).model
        except (LookupError, ValueError):  # unknown provider id or model
            continue
    return None


def _catalog_ratio(info: gp.ModelInfo) -> Decimal | None:
    """The batch variant's price over the standard price (the larger of input's and
    output's: a batch is never charged less than it may cost)."""
    standard = info.prices if isinstance(info.prices, gp.ModelPrice) else info.prices[-1].prices
    for variant in info.price_variants or ():
        if variant.when.get("processing") != "batch":
            continue
        shares = []
        for name in ("input_mtok", "output_mtok"):
            batch, full = _base(getattr(variant.prices, name)), _base(getattr(standard, name))
            if batch is not None and full:
                shares.append(batch / full)
        if shares:
            return min(FULL_PRICE, max(shares))
    return None


def _base(value: object) -> Decimal | None:
    return value.base if isinstance(value, gp.TieredPrices) else value if isinstance(value, Decimal) else None
