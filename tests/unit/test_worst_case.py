"""The worst case of a request, read from the body sent upstream: generations, the cap the
provider honours, and a prompt bound that no tokenizer can exceed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.config.schema import EstimateConfig
from tollway.errors import GatewayError
from tollway.pricing import ReservationRates
from tollway.providers.client import Api
from tollway.proxy.estimate import demand_for
from tollway.proxy.request import parse_request
from tollway.proxy.worst_case import (
    ANTHROPIC_IMAGE_TOKENS,
    OPENAI_IMAGE_TOKENS,
    OPENAI_IMAGE_TOKENS_MINI,
    analyse,
    with_cap,
)
from tollway.testing import mock_content

HELLO = [{"role": "user", "content": "Hello"}]


def test_chat_counts_n_generations_and_the_honoured_cap() -> None:
    worst = analyse(Api.CHAT, {"model": "m", "messages": HELLO, "n": 5, "max_completion_tokens": 100}, "m")
    assert (worst.generations, worst.cap, worst.cap_field) == (5, 100, "max_completion_tokens")
    assert worst.output_tokens(100) == 500


def test_completions_count_every_prompt_and_best_of() -> None:
    body = {"model": "m", "prompt": ["a", "b", "c"], "n": 2, "best_of": 4, "max_tokens": 10}
    worst = analyse(Api.COMPLETIONS, body, "m")
    assert (worst.generations, worst.cap) == (12, 10)  # best_of generations per prompt, all billed


def test_token_array_prompts_count_one_token_per_element() -> None:
    one = analyse(Api.COMPLETIONS, {"model": "m", "prompt": [1, 2, 3, 4]}, "m")
    many = analyse(Api.COMPLETIONS, {"model": "m", "prompt": [[1, 2], [3, 4, 5]]}, "m")
    assert (one.generations, one.token_ids) == (1, 4) and one.prompt_tokens >= 4
    assert (many.generations, many.token_ids) == (2, 5) and many.prompt_tokens >= 5


def test_token_arrays_are_estimated_by_length_not_by_bytes() -> None:
    raw = b'{"model":"m","prompt":[' + b",".join(b"1" for _ in range(400)) + b"]}"
    request = parse_request(Api.COMPLETIONS, raw)
    demand = demand_for(request, analyse(Api.COMPLETIONS, request.body, "m"), EstimateConfig(), None)
    assert demand.prompt_estimate >= 400  # bytes/4 alone would say about 200


def test_embeddings_count_every_input_and_have_no_output() -> None:
    worst = analyse(Api.EMBEDDINGS, {"model": "e", "input": ["abcd"] * 50}, "e")
    assert worst.prompt_tokens >= 200 and worst.cap == 0 and worst.output_tokens(0) == 0


@pytest.mark.parametrize(("api", "body", "field"), [
    (Api.CHAT, {"max_tokens": 5000, "max_completion_tokens": 10}, "max_completion_tokens"),
    (Api.CHAT, {"max_tokens": 10, "max_completion_tokens": 10}, "max_completion_tokens"),
    (Api.MESSAGES, {"max_tokens": 5000, "max_completion_tokens": 10}, "max_completion_tokens"),
    (Api.CHAT, {"n": 0}, "n"),
    (Api.COMPLETIONS, {"best_of": "9"}, "best_of"),
    (Api.CHAT, {"max_tokens": -1}, "max_tokens"),
])
def test_caps_that_conflict_or_make_no_sense_are_refused_naming_the_field(api, body, field) -> None:
    with pytest.raises(GatewayError) as caught:
        analyse(api, {"model": "m", "messages": HELLO, "prompt": "x", **body}, "m")
    assert caught.value.status == 400 and caught.value.param == field


def test_the_client_body_is_refused_too_so_no_translation_can_hide_a_second_cap() -> None:
    raw = b'{"model":"m","max_tokens":5000,"max_completion_tokens":10,"messages":[{"role":"user","content":"x"}]}'
    with pytest.raises(GatewayError) as caught:
        parse_request(Api.MESSAGES, raw)
    assert caught.value.param == "max_completion_tokens"


def test_multibyte_text_counts_its_utf8_bytes() -> None:
    ascii_ = analyse(Api.CHAT, {"model": "m", "messages": [{"role": "user", "content": "a" * 30}]}, "m")
    wide = analyse(Api.CHAT, {"model": "m", "messages": [{"role": "user", "content": "中" * 30}]}, "m")
    assert wide.prompt_tokens - ascii_.prompt_tokens == 60  # 3 bytes each


def test_images_count_their_providers_largest_image_not_their_url() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    message = {"role": "user", "content": [part]}
    assert analyse(Api.CHAT, {"model": "gpt-4o", "messages": [message]}, "gpt-4o").prompt_tokens >= OPENAI_IMAGE_TOKENS
    assert analyse(Api.CHAT, {"model": "gpt-4o-mini", "messages": [message]}, "gpt-4o-mini").prompt_tokens \
        >= OPENAI_IMAGE_TOKENS_MINI
    anthropic = {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}
    assert analyse(Api.MESSAGES, {"model": "c", "max_tokens": 1, "messages": [anthropic]}, "c").prompt_tokens \
        >= ANTHROPIC_IMAGE_TOKENS


def test_tools_add_the_tool_use_system_prompt() -> None:
    tool = {"name": "get_weather", "input_schema": {"type": "object"}}
    plain = analyse(Api.MESSAGES, {"model": "c", "max_tokens": 1, "messages": HELLO}, "c")
    with_tools = analyse(Api.MESSAGES, {"model": "c", "max_tokens": 1, "messages": HELLO, "tools": [tool]}, "c")
    assert with_tools.prompt_tokens - plain.prompt_tokens >= 530


def test_fields_it_does_not_know_count_as_prompt() -> None:
    plain = analyse(Api.CHAT, {"model": "m", "messages": HELLO}, "m")
    smuggled = analyse(Api.CHAT, {"model": "m", "messages": HELLO, "context_docs": ["x" * 1000]}, "m")
    assert smuggled.prompt_tokens - plain.prompt_tokens >= 1000


def test_with_cap_writes_the_field_the_provider_honours() -> None:
    body = {"model": "m", "messages": HELLO}
    worst = analyse(Api.CHAT, body, "m")
    assert with_cap(worst, Api.CHAT, body, 7) == "max_completion_tokens" and body["max_completion_tokens"] == 7
    legacy = {"model": "m", "messages": HELLO, "max_tokens": 99}
    assert with_cap(analyse(Api.CHAT, legacy, "m"), Api.CHAT, legacy, 7) == "max_tokens" and legacy["max_tokens"] == 7


def test_the_estimate_counts_generations_and_the_cap_and_stays_below_the_worst_case() -> None:
    raw = b'{"model":"m","n":3,"max_tokens":50,"messages":[{"role":"user","content":"Hello there"}]}'
    request = parse_request(Api.CHAT, raw)
    demand = demand_for(request, analyse(Api.CHAT, request.body, "m"), EstimateConfig(),
                        ReservationRates(10**12, 10**12, 10**12))
    tokens, cost, worst_tokens, worst_cost = demand(demand.cap)
    assert tokens == demand.prompt_estimate + 150 and tokens <= worst_tokens and cost <= worst_cost


texts = st.text(max_size=200)


@given(st.lists(st.tuples(st.sampled_from(["user", "assistant", "system"]), texts), min_size=1, max_size=8))
def test_the_bound_is_never_below_the_mock_providers_count(messages) -> None:
    body = {"model": "m", "messages": [{"role": role, "content": text} for role, text in messages]}
    assert analyse(Api.CHAT, body, "m").prompt_tokens >= mock_content.chat_prompt_tokens(body["messages"])


@given(texts)
def test_no_text_has_more_tokens_than_its_bound_counts(text) -> None:
    # A byte-level BPE token is at least one byte: the bound is the text's UTF-8 length.
    bound = analyse(Api.COMPLETIONS, {"model": "m", "prompt": text}, "m").prompt_tokens
    assert bound >= len(text.encode("utf-8", "surrogatepass")) >= math.ceil(len(text) / 4)
