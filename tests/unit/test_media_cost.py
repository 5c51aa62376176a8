"""Prices of the media routes in their own units and the amounts reserved before the call
(`tollway.proxy.media_cost`, `tollway.pricing_media`), and the config's media prices."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tollway.config.schema import EstimateConfig, MediaConfig, PriceConfig
from tollway.pricing import MediaPrice, ModelPrice, PriceCatalog
from tollway.pricing_media import image_price, media_price
from tollway.proxy import media_cost

DALLE = ModelPrice(Decimal(0), Decimal(0), media=MediaPrice(per_image={"1024x1024/hd": Decimal("0.08"),
                                                                       "1024x1024": Decimal("0.04")}), tokens=False)
WHISPER = ModelPrice(Decimal(0), Decimal(0), media=MediaPrice(per_audio_second=Decimal("0.0001")), tokens=False)
TTS = ModelPrice(Decimal(0), Decimal(0), media=MediaPrice(per_million_characters=Decimal(15)), tokens=False)
IMAGE_TOKENS = ModelPrice(Decimal(5), Decimal(40), media=MediaPrice(image_input=Decimal(10)))
TRANSCRIBE = ModelPrice(Decimal("2.5"), Decimal(10), media=MediaPrice(audio_input=Decimal(6)))


@pytest.mark.parametrize(("size", "quality", "usd"), [
    ("1024x1024", "hd", "0.08"), ("1024x1024", "standard", "0.04"), ("1024x1024", "", "0.04"),
    ("1792x1024", "hd", "0.08"),  # a size the table does not name: its dearest price
])
def test_image_price_lookup_order(size: str, quality: str, usd: str) -> None:
    assert image_price(DALLE, size, quality) == Decimal(usd)


def test_images_are_reserved_and_charged_per_image() -> None:
    demand = media_cost.image_demand(DALLE, 3, "1024x1024", "hd", 10, edit=False)
    assert demand == media_cost.MediaDemand(0, 240_000_000, 0, 240_000_000)
    charged = media_cost.image_charge(DALLE, {"data": [{}, {}]}, 3, "1024x1024", "hd")
    assert charged.cost_nano == 160_000_000  # two came back


def test_token_priced_images_reserve_the_largest_image_and_charge_the_reported_tokens() -> None:
    demand = media_cost.image_demand(IMAGE_TOKENS, 2, "", "", 100, edit=False)
    assert demand.worst_tokens == 100 + 2 * media_cost.IMAGE_OUTPUT_TOKENS
    assert demand.worst_cost_nano == 100 * 5_000 + 2 * 6_240 * 40_000
    answer = {"data": [{}], "usage": {"input_tokens": 150, "output_tokens": 272,
                                      "input_tokens_details": {"text_tokens": 50, "image_tokens": 100}}}
    charged = media_cost.image_charge(IMAGE_TOKENS, answer, 1, "", "low")
    assert charged.cost_nano == 50 * 5_000 + 100 * 10_000 + 272 * 40_000
    assert charged.usage.total_tokens == 422
    edit = media_cost.image_demand(IMAGE_TOKENS, 1, "", "", 0, edit=True)
    assert edit.worst_tokens == (media_cost.MAX_EDIT_IMAGES + 1) * media_cost.IMAGE_OUTPUT_TOKENS


def test_audio_seconds_from_the_upload_size() -> None:
    media = MediaConfig()
    assert media_cost.audio_seconds(160_000, media) == (10, 214)
    assert media_cost.audio_seconds(160_000, MediaConfig(max_audio_seconds=60)) == (10, 60)
    assert media_cost.audio_seconds(160_000, MediaConfig(max_audio_seconds=5)) == (5, 5)  # never above the worst


def test_audio_is_settled_from_the_responses_duration() -> None:
    assert media_cost.audio_charge(WHISPER, {"usage": {"type": "duration", "seconds": 7}}, 99).cost_nano == 700_000
    assert media_cost.audio_charge(WHISPER, {"duration": 2.5, "text": ""}, 99).cost_nano == 250_000
    estimated = media_cost.audio_charge(WHISPER, None, 12)  # text, srt, vtt: no duration in the answer
    assert estimated.cost_nano == 1_200_000 and "estimated" in estimated.detail
    tokens = media_cost.audio_charge(TRANSCRIBE, {"usage": {"type": "tokens", "input_tokens": 100, "output_tokens": 20,
                                                            "input_token_details": {"audio_tokens": 90,
                                                                                    "text_tokens": 10}}}, 0)
    assert tokens.cost_nano == 90 * 6_000 + 10 * 2_500 + 20 * 10_000
    assert tokens.usage.total_tokens == 120


@given(st.integers(min_value=1, max_value=10**6))
def test_speech_is_exact_per_character(characters: int) -> None:
    demand = media_cost.speech_demand(TTS, characters, characters)
    assert demand.cost_nano == demand.worst_cost_nano == characters * 15_000  # $15 per million
    assert media_cost.speech_charge(demand, characters).cost_nano == demand.cost_nano


@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=1, max_value=10**5))
def test_the_audio_estimate_never_exceeds_the_worst_case(size: int, max_seconds: int) -> None:
    for media in (MediaConfig(), MediaConfig(max_audio_seconds=max_seconds)):
        estimated, worst = media_cost.audio_seconds(size, media)
        assert estimated <= worst
        demand = media_cost.audio_demand(WHISPER, size, media)
        assert demand.cost_nano <= demand.worst_cost_nano


def test_moderations_reserve_text_bytes_at_worst() -> None:
    price = ModelPrice(Decimal(1), Decimal(0))
    demand = media_cost.moderation_demand(price, 1000, 900, 1, EstimateConfig())
    assert demand.worst_tokens == 900 + media_cost.IMAGE_OUTPUT_TOKENS
    assert demand.tokens == 250 and demand.cost_nano == 250_000


def test_price_config_takes_media_units_alone() -> None:
    config = PriceConfig(per_image={"1024x1024": 0.04, "default": 0.02})
    assert media_price(config).per_image == {"1024x1024": Decimal("0.04"), "default": Decimal("0.02")}
    assert media_price(PriceConfig(per_image=0.02)).per_image == {"default": Decimal("0.02")}
    assert media_price(PriceConfig(input=1, output=2)) is None


@pytest.mark.parametrize("bad", [{}, {"input": 1}, {"per_image": -1}, {"per_audio_second": "x"},
                                 {"per_image": {"1024x1024": -0.1}}, {"per_minute": 1}])
def test_price_config_refuses_what_prices_nothing_or_badly(bad: dict) -> None:
    with pytest.raises(ValidationError):
        PriceConfig(**bad)


def test_the_catalog_prices_whisper_per_second_and_tts_per_character() -> None:
    catalog = PriceCatalog()
    whisper = catalog.price_for("openai", "openai", "whisper-1")
    assert whisper is not None and whisper.media.per_audio_second == Decimal("0.0001") and not whisper.tokens
    tts = catalog.price_for("openai", "openai", "tts-1")
    assert tts is not None and tts.media.per_million_characters == Decimal(15)


def test_a_per_second_price_wins_over_reported_tokens() -> None:
    # Priced per second in the config, the provider reporting tokens only: the duration is
    # not in the answer, so the estimate from the upload's size is charged, never nothing.
    answer = {"usage": {"type": "tokens", "input_tokens": 30, "output_tokens": 5}}
    charged = media_cost.audio_charge(WHISPER, answer, 12)
    assert charged.cost_nano == 1_200_000 and charged.usage.total_tokens == 35


def test_sizes_and_qualities_match_whatever_their_case() -> None:
    price = ModelPrice(Decimal(0), Decimal(0), media=media_price(PriceConfig(per_image={"1024x1024/HD": 0.08,
                                                                                        "1024x1024": 0.04})),
                       tokens=False)
    assert image_price(price, "1024X1024", " hd ") == Decimal("0.08")
