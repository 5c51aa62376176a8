"""Usage extraction from OpenAI and Anthropic response bodies."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import Message
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion

from tollway.providers.usage_extract import usage_from_anthropic, usage_from_openai
from tollway.usage import Usage


@pytest.mark.parametrize(("usage", "expected"), [
    ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, Usage(10, 5)),
    ({"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
      "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
      "completion_tokens_details": {"reasoning_tokens": 30}},
     Usage(prompt_tokens=100, completion_tokens=40, cached_tokens=64, reasoning_tokens=30)),
    ({"prompt_tokens": 9, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 4}},
     Usage(prompt_tokens=9, completion_tokens=1, cached_tokens=2, cache_write_tokens=4)),
    ({"prompt_tokens": 8, "total_tokens": 8}, Usage(8, 0)),  # embeddings
    ({"prompt_tokens": 7, "completion_tokens": None, "prompt_tokens_details": None,
      "completion_tokens_details": None}, Usage(7, 0)),
    ({"prompt_tokens": None, "completion_tokens": 3}, Usage(0, 3)),
    ({"prompt_tokens": 4.0, "completion_tokens": 2}, Usage(4, 2)),
    ({"prompt_tokens": True, "completion_tokens": "2"}, Usage(0, 0)),  # nonsense counts as zero
    ({}, Usage()),
])
def test_usage_from_openai_reads_counts_and_tolerates_gaps(usage: dict[str, Any], expected: Usage) -> None:
    assert usage_from_openai(usage) == expected


@pytest.mark.parametrize("missing", [None, "not a dict", ["list"]])
def test_usage_from_openai_is_none_without_a_usage_object(missing: Any) -> None:
    assert usage_from_openai(missing) is None


@pytest.mark.parametrize(("usage", "expected"), [
    ({"input_tokens": 10, "output_tokens": 5}, Usage(10, 5)),
    ({"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 50},
     Usage(prompt_tokens=160, completion_tokens=5, cached_tokens=100, cache_write_tokens=50)),
    ({"input_tokens": 3, "output_tokens": 9, "cache_read_input_tokens": None, "cache_creation_input_tokens": None},
     Usage(3, 9)),
    ({"input_tokens": 1, "output_tokens": 20, "output_tokens_details": {"thinking_tokens": 12}},
     Usage(prompt_tokens=1, completion_tokens=20, reasoning_tokens=12)),
    ({"output_tokens": 15}, Usage(0, 15)),  # a message_delta's usage
])
def test_usage_from_anthropic_counts_cache_reads_and_writes_as_prompt(usage: dict[str, Any], expected: Usage) -> None:
    assert usage_from_anthropic(usage) == expected


def test_usage_from_anthropic_is_none_without_a_usage_object() -> None:
    assert usage_from_anthropic(None) is None


def test_fields_the_sdks_parse_are_the_fields_extracted() -> None:
    """Bodies the SDKs accept yield the same numbers the SDKs read from them."""
    chat = ChatCompletion.model_validate({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [],
        "usage": {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57,
                  "prompt_tokens_details": {"cached_tokens": 32}, "completion_tokens_details": {"reasoning_tokens": 4}}})
    assert chat.usage is not None
    assert usage_from_openai(chat.usage.model_dump()) == Usage(50, 7, cached_tokens=32, reasoning_tokens=4)

    emb = CreateEmbeddingResponse.model_validate({"object": "list", "data": [], "model": "e",
                                                  "usage": {"prompt_tokens": 8, "total_tokens": 8}})
    assert usage_from_openai(emb.usage.model_dump()) == Usage(8, 0)

    legacy = Completion.model_validate({"id": "c", "object": "text_completion", "created": 1, "model": "m",
                                        "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9,
                                                                 "total_tokens": 12}})
    assert legacy.usage is not None
    assert usage_from_openai(legacy.usage.model_dump()) == Usage(3, 9)

    msg = Message.model_validate({"id": "m", "type": "message", "role": "assistant", "model": "claude", "content": [],
                                  "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 6,
                                                                       "cache_read_input_tokens": 7}})
    assert usage_from_anthropic(msg.usage.model_dump()) == Usage(12, 6, cached_tokens=7)
