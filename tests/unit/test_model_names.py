"""Canonical model names: one model, one set of limits and one price, however it is spelled."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from tests import factories as f
from tollway.errors import GatewayError
from tollway.governance.engine import RequestFacts, plan, static_checks
from tollway.governance.model import Kind
from tollway.governance.names import BadModelName, canonical_model, model_key
from tollway.pricing import ModelPrice, PriceCatalog
from tollway.providers.client import Api
from tollway.proxy.request import parse_request
from tollway.proxy.targets import Target, TargetResolver
from tollway.usage import Usage


@pytest.mark.parametrize("spelling", ["gpt-4o-mini", " gpt-4o-mini ", "\tgpt-4o-mini\n", "ＧＰＴ-4o-mini", "GPT-4O-MINI"])
def test_spellings_of_one_model_share_one_key(spelling) -> None:
    assert model_key(canonical_model(spelling)) == "gpt-4o-mini"


@pytest.mark.parametrize("hidden", ["gpt-4o\u200b-mini", "gpt-4o-mini\u2060", "\ufeffgpt-4o-mini", "gpt\x00-4o",
                                    "gpt-4o\u00ad-mini", "gpt 4o-mini", "gpt-4o\u00a0mini", "\u2029"])
def test_invisible_control_and_inner_whitespace_are_refused_naming_model(hidden) -> None:
    with pytest.raises(BadModelName):
        canonical_model(hidden)
    with pytest.raises(GatewayError) as caught:
        parse_request(Api.CHAT, orjson.dumps({"model": hidden, "messages": [{"role": "user", "content": "x"}]}))
    assert caught.value.status == 400 and caught.value.param == "model"


def test_the_resolver_matches_providers_aliases_and_fallbacks_without_case() -> None:
    resolver = TargetResolver(["openai", "local"], {"Fast": "local/Small"}, {"FAST": ["openai/gpt-4o"]})
    assert resolver.resolve("OpenAI/gpt-4o", None) == [Target("openai", "gpt-4o")]
    assert resolver.resolve("fast", None) == [Target("local", "Small"), Target("openai", "gpt-4o")]


def test_model_configs_bind_every_spelling() -> None:
    snapshot = f.snapshot(model_configs=[f.model_config("gpt-4o-mini", budget=f.budget(1))])
    for spelling in ("GPT-4o-Mini", "gpt-4o-MINI"):
        checks = static_checks(snapshot, None, "openai", model_key(canonical_model(spelling)))
        assert [check.kind for check in checks] == [Kind.BUDGET]


def test_allowed_models_are_matched_without_case() -> None:
    vk = f.virtual_key("k", allowed_models=["gpt-4o-mini"])  # the snapshot keys them with model_key
    snapshot = f.snapshot(keys={f.key_value("k"): vk})
    allowed = plan(snapshot, RequestFacts("openai", model_key("GPT-4o-mini"), f.facts(key=f.key_value("k")).key_hash,
                                          1, 1))
    assert not hasattr(allowed, "decision")


def test_pricing_overrides_apply_to_every_spelling() -> None:
    catalog = PriceCatalog({"Local/My-Model": ModelPrice(Decimal(1), Decimal(2))})
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=0)
    assert catalog.cost_nano("openai", "local", "my-model", usage) == 1_000_000_000
    assert catalog.cost_nano("openai", "LOCAL", "MY-MODEL", usage) == 1_000_000_000
    assert catalog.reservation_rates("openai", "local", "unknown-thing-xyz") is None
