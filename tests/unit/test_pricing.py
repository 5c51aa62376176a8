"""Pricing: catalog resolution, integer nano-dollar costs, config parsing."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway import pricing
from tollway.pricing import NANO_PER_USD, ModelPrice, PriceCatalog, estimate_cost_nano, parse_price
from tollway.usage import Usage

CHEAP = ModelPrice(input=Decimal("1"), output=Decimal("2"))


def genai_nano(model: str, provider_id: str, usage: Usage, when: datetime | None = None) -> int:
    """genai-prices' own cost for the same usage, rounded up to nano-dollars."""
    gp_usage = genai_prices.Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens,
                                  cache_read_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_write_tokens)
    result = genai_prices.calc_price(gp_usage, model, provider_id=provider_id, genai_request_timestamp=when)
    return math.ceil(result.total_price * NANO_PER_USD)


def test_gpt_4o_mini_cost_matches_genai_prices_calc_price() -> None:
    usage = Usage(prompt_tokens=12_345, completion_tokens=678, cached_tokens=2_048)
    assert PriceCatalog().cost_nano("openai", "openai", "gpt-4o-mini", usage) == genai_nano("gpt-4o-mini", "openai", usage)


def test_anthropic_cache_reads_and_writes_match_genai_prices_calc_price() -> None:
    usage = Usage(prompt_tokens=5_000, completion_tokens=300, cached_tokens=1_000, cache_write_tokens=2_000)
    cost = PriceCatalog().cost_nano("anthropic", "claude", "claude-3-5-haiku-latest", usage)
    assert cost == genai_nano("claude-3-5-haiku-latest", "anthropic", usage)


def test_cached_input_is_charged_at_the_discounted_price() -> None:
    catalog = PriceCatalog()
    cold = catalog.cost_nano("openai", "openai", "gpt-4o-mini", Usage(prompt_tokens=10_000))
    warm = catalog.cost_nano("openai", "openai", "gpt-4o-mini", Usage(prompt_tokens=10_000, cached_tokens=8_000))
    price = catalog.price_for("openai", "openai", "gpt-4o-mini")
    assert price is not None and price.cached_input is not None and price.cached_input < price.input
    assert warm < cold


@pytest.mark.parametrize(("provider_type", "model"), [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-4.1-mini"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("azure", "gpt-4o-mini"),
    ("openai", "claude-3-5-haiku-latest"),  # OpenAI-compatible server: found by model name alone
])
def test_common_models_resolve_from_genai_prices(provider_type: str, model: str) -> None:
    price = PriceCatalog().price_for(provider_type, "p", model)
    assert price is not None and price.input > 0 and price.output > 0


def test_dated_model_id_has_the_same_price_as_its_alias() -> None:
    catalog = PriceCatalog()
    assert catalog.price_for("openai", "o", "gpt-4o-mini-2024-07-18") == catalog.price_for("openai", "o", "gpt-4o-mini")


def test_time_of_day_prices_never_undercharge() -> None:
    usage = Usage(prompt_tokens=100_000, completion_tokens=10_000)
    cost = PriceCatalog().cost_nano("deepseek", "ds", "deepseek-chat", usage)
    today = datetime.now(UTC).date()
    for hour in range(24):
        when = datetime(today.year, today.month, today.day, hour, 45, tzinfo=UTC)
        assert cost >= genai_nano("deepseek-chat", "deepseek", usage, when)


def test_provider_model_override_beats_the_catalog_and_the_bare_override() -> None:
    mine = ModelPrice(input=Decimal("9"), output=Decimal("9"))
    catalog = PriceCatalog({"local/gpt-4o-mini": mine, "gpt-4o-mini": CHEAP})
    assert catalog.price_for("openai", "local", "gpt-4o-mini") == mine
    assert catalog.price_for("openai", "other", "gpt-4o-mini") == CHEAP


def test_bare_model_override_applies_to_any_provider() -> None:
    catalog = PriceCatalog({"my-llama": CHEAP})
    assert catalog.price_for("openai", "a", "my-llama") == CHEAP
    assert catalog.price_for("anthropic", "b", "my-llama") == CHEAP
    assert catalog.cost_nano("openai", "a", "my-llama", Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)) \
        == 3 * NANO_PER_USD


def test_default_price_is_used_for_an_unknown_model(caplog: pytest.LogCaptureFixture) -> None:
    catalog = PriceCatalog(default=CHEAP)
    with caplog.at_level(logging.WARNING):
        assert catalog.price_for("openai", "local", "llama3-unknown-xyz") == CHEAP
    assert not caplog.records


def test_unknown_model_without_default_is_free_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    catalog = PriceCatalog()
    with caplog.at_level(logging.WARNING, logger="tollway.pricing"):
        for _ in range(5):
            assert catalog.price_for("openai", "local", "llama3-unknown-xyz") is None
            assert catalog.cost_nano("openai", "local", "llama3-unknown-xyz", Usage(100, 100)) == 0
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "llama3-unknown-xyz" in message and "charged nothing" in message and "pricing:" in message


def test_warnings_go_to_the_injected_logger(caplog: pytest.LogCaptureFixture) -> None:
    catalog = PriceCatalog(logger=logging.getLogger("custom.pricing"))
    with caplog.at_level(logging.WARNING, logger="custom.pricing"):
        catalog.price_for("openai", "local", "llama3-unknown-xyz")
    assert [r.name for r in caplog.records] == ["custom.pricing"]


def test_genai_lookup_runs_once_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = pricing._lookup_genai

    def spy(provider_type: str, model: str) -> ModelPrice | None:
        calls.append(model)
        return real(provider_type, model)

    monkeypatch.setattr(pricing, "_lookup_genai", spy)
    catalog = PriceCatalog()
    for _ in range(50):
        catalog.cost_nano("openai", "openai", "gpt-4o-mini", Usage(10, 10))
        catalog.price_for("openai", "openai", "gpt-4o")
        catalog.price_for("openai", "local", "nothing-known-here")
    assert sorted(calls) == ["gpt-4o", "gpt-4o-mini", "nothing-known-here"]


def test_overrides_skip_the_genai_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing, "_lookup_genai", lambda *_: pytest.fail("looked up an overridden model"))
    assert PriceCatalog({"gpt-4o": CHEAP}).price_for("openai", "o", "gpt-4o") == CHEAP


def test_a_one_token_request_is_never_free() -> None:
    tiny = ModelPrice(input=Decimal("0.0001"), output=Decimal("0.0001"))  # 0.1 nano per token
    catalog = PriceCatalog({"tiny": tiny})
    assert catalog.cost_nano("openai", "p", "tiny", Usage(prompt_tokens=1)) == 1
    assert catalog.cost_nano("openai", "p", "tiny", Usage(completion_tokens=1)) == 1
    assert catalog.cost_nano("openai", "p", "tiny", Usage()) == 0
    assert estimate_cost_nano(tiny, 1, 0) == 1


def test_cache_prices_default_to_the_input_price() -> None:
    catalog = PriceCatalog({"m": CHEAP})
    plain = catalog.cost_nano("openai", "p", "m", Usage(prompt_tokens=1000))
    assert catalog.cost_nano("openai", "p", "m", Usage(prompt_tokens=1000, cached_tokens=400, cache_write_tokens=300)) \
        == plain


@given(
    prompt=st.integers(0, 10**7), cached=st.integers(0, 10**7), written=st.integers(0, 10**7),
    completion=st.integers(0, 10**7),
    prices=st.lists(st.decimals(0, 1000, places=6), min_size=4, max_size=4),
)
def test_cost_is_the_exact_cost_rounded_up(prompt: int, cached: int, written: int, completion: int,
                                            prices: list[Decimal]) -> None:
    cached, written = min(cached, prompt), min(written, prompt - min(cached, prompt))
    price = ModelPrice(*prices)
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached, cache_write_tokens=written)
    exact = ((prompt - cached - written) * price.input + cached * prices[2] + written * prices[3]
             + completion * price.output) * NANO_PER_USD / 1_000_000
    assert PriceCatalog({"m": price}).cost_nano("openai", "p", "m", usage) == math.ceil(exact)


def test_estimate_charges_prompt_at_input_and_completion_at_output() -> None:
    assert estimate_cost_nano(CHEAP, 1_000_000, 500_000) == 2 * NANO_PER_USD
    assert estimate_cost_nano(None, 1_000, 1_000) == 0


def test_parse_price_reads_config_numbers_exactly() -> None:
    assert parse_price({"input": 0.15, "output": 0.6, "cached_input": 0.075}) == ModelPrice(
        Decimal("0.15"), Decimal("0.6"), Decimal("0.075"), None)
    assert parse_price({"input": 0, "output": "2", "cache_write": Decimal("1.25")}).cache_write == Decimal("1.25")


@pytest.mark.parametrize(("config", "field"), [
    ({"output": 1}, "input"),
    ({"input": 1}, "output"),
    ({"input": -0.1, "output": 1}, "input"),
    ({"input": 1, "output": "lots"}, "output"),
    ({"input": 1, "output": True}, "output"),
    ({"input": 1, "output": float("nan")}, "output"),
    ({"input": 1, "output": float("inf")}, "output"),
    ({"input": 1, "output": 1, "cached_input": -1}, "cached_input"),
    ({"input": 1, "output": 1, "cache_write": [1]}, "cache_write"),
    ({"input": 1, "output": 1, "cached": 0.5}, "cached"),
])
def test_parse_price_rejects_bad_fields_by_name(config: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        parse_price(config)


def test_parse_price_rejects_a_non_mapping() -> None:
    with pytest.raises(ValueError, match="mapping"):
        parse_price([("input", 1)])  # type: ignore[arg-type]
