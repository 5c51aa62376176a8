"""Every request field, in each direction, is translated, refused or ignored as the table
in `tollway.providers.field_rules` says — and the table covers every field the official
SDKs can send.

The walk is table-driven: one example value per field. A field added to a table without an
example, or to an SDK without a decision, fails here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from anthropic.types import message_create_params as anthropic_params
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import completion_create_params as openai_params

from tests.unit.test_anthropic_translate import (
    valid_chat_request,
    valid_messages_request,
)
from tollway.providers.anthropic_translate import (
    TranslationError,
    chat_request_to_messages,
    messages_request_to_chat,
)
from tollway.providers.field_rules import (
    CHAT_TO_MESSAGES,
    MESSAGES_TO_CHAT,
    Action,
    FieldRule,
)

ABSENT = object()  # in an expectation: the translated body must not hold this key
USER = {"role": "user", "content": "hi"}
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CHAT_TOOLS = [{"type": "function",
               "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}}]
MESSAGES_TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]


@dataclass(frozen=True)
class Example:
    """A value for one field; ``expect``: what the translated body then holds (TRANSLATE)."""

    value: Any
    expect: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # other fields the example needs


@dataclass(frozen=True)
class Direction:
    name: str
    table: Mapping[str, FieldRule]
    translate: Callable[[dict[str, Any]], dict[str, Any]]
    validate: Callable[[dict[str, Any]], Any]
    base: Mapping[str, Any]
    provider: str
    examples: Mapping[str, Example]


CHAT_EXAMPLES: dict[str, Example] = {
    "model": Example("gpt-4o", {"model": "claude-x"}),
    "messages": Example([{"role": "developer", "content": "S"}, USER], {"system": "S", "messages": [USER]}),
    "max_completion_tokens": Example(20, {"max_tokens": 20}),
    "max_tokens": Example(30, {"max_tokens": 30}),
    "temperature": Example(0.5, {"temperature": 0.5}),
    "top_p": Example(0.9, {"top_p": 0.9}),
    "stop": Example("END", {"stop_sequences": ["END"]}),
    "stream": Example(True, {"stream": True}),
    "stream_options": Example({"include_usage": True}, {"stream": True, "stream_options": ABSENT}, {"stream": True}),
    "tools": Example(CHAT_TOOLS, {"tools": MESSAGES_TOOLS}),
    "tool_choice": Example("required", {"tool_choice": {"type": "any"}}, {"tools": CHAT_TOOLS}),
    "parallel_tool_calls": Example(False, {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
                                   {"tools": CHAT_TOOLS}),
    "user": Example("u-1", {"metadata": {"user_id": "u-1"}}),
    "safety_identifier": Example("s-1", {"metadata": {"user_id": "s-1"}}, {"user": "u-1"}),
    "reasoning_effort": Example("medium", {"thinking": {"type": "enabled", "budget_tokens": 8192},
                                           "max_tokens": 4096 + 8192}),
    "response_format": Example({"type": "json_schema", "json_schema": {"name": "city", "schema": WEATHER}},
                               {"tool_choice": {"type": "tool", "name": "tollway_json_answer",
                                                "disable_parallel_tool_use": True}}),
    "service_tier": Example("default", {"service_tier": "standard_only"}),
    "n": Example(2),
    "audio": Example({"voice": "alloy", "format": "wav"}),
    "modalities": Example(["text", "audio"]),
    "frequency_penalty": Example(0.5),
    "presence_penalty": Example(-0.5),
    "logit_bias": Example({"50256": -100}),
    "logprobs": Example(True),
    "top_logprobs": Example(3),
    "seed": Example(42),
    "verbosity": Example("low"),
    "store": Example(True),
    "functions": Example([{"name": "f", "parameters": WEATHER}]),
    "function_call": Example("auto"),
    "web_search_options": Example({"search_context_size": "low"}),
    "moderation": Example({"policy": {"input": {"mode": "block"}}}),
    "metadata": Example({"project": "x"}),
    "prediction": Example({"type": "content", "content": "draft"}),
    "prompt_cache_key": Example("k-1"),
    "prompt_cache_retention": Example("24h"),
    "prompt_cache_options": Example({"ttl": "1h"}),
}

MESSAGES_EXAMPLES: dict[str, Example] = {
    "model": Example("claude-x", {"model": "claude-x"}),
    "messages": Example([USER, {"role": "assistant", "content": "yo"}, USER],
                        {"messages": [USER, {"role": "assistant", "content": "yo"}, USER]}),
    "max_tokens": Example(50, {"max_tokens": 50}),
    "system": Example("S", {"messages": [{"role": "system", "content": "S"}, USER]}),
    "temperature": Example(0.5, {"temperature": 0.5}),
    "top_p": Example(0.9, {"top_p": 0.9}),
    "stop_sequences": Example(["A", "B", "C", "D"], {"stop": ["A", "B", "C", "D"]}),
    "stream": Example(True, {"stream": True, "stream_options": {"include_usage": True}}),
    "tools": Example(MESSAGES_TOOLS, {"tools": CHAT_TOOLS}),
    "tool_choice": Example({"type": "any"}, {"tool_choice": "required"}, {"tools": MESSAGES_TOOLS}),
    "metadata": Example({"user_id": "u-1"}, {"user": "u-1"}),
    "thinking": Example({"type": "enabled", "budget_tokens": 8192},
                        {"reasoning_effort": "medium", "max_completion_tokens": 100, "max_tokens": ABSENT}),
    "output_config": Example({"format": {"type": "json_schema", "schema": WEATHER}},
                             {"response_format": {"type": "json_schema",
                                                  "json_schema": {"name": "answer", "schema": WEATHER,
                                                                  "strict": True}}}),
    "service_tier": Example("standard_only", {"service_tier": "default"}),
    "top_k": Example(5),
    "container": Example("container_1"),
    "mcp_servers": Example([{"type": "url", "url": "https://mcp.example.com", "name": "x"}]),
    "context_management": Example({"edits": [{"type": "clear_tool_uses_20250919"}]}),
    "inference_geo": Example("us"),
    "speed": Example("fast"),
    "diagnostics": Example({"previous_message_id": "msg_1"}),
    "workspace_id": Example("wrkspc_1"),
    "user_profile_id": Example("profile_1"),
    "cache_control": Example({"type": "ephemeral"}),
}

DIRECTIONS = (
    Direction("chat→messages", CHAT_TO_MESSAGES, lambda body: chat_request_to_messages(body, "claude-x"),
              valid_messages_request, {"model": "gpt", "messages": [USER]}, "Anthropic", CHAT_EXAMPLES),
    Direction("messages→chat", MESSAGES_TO_CHAT, messages_request_to_chat, valid_chat_request,
              {"model": "m", "max_tokens": 100, "messages": [USER]}, "OpenAI", MESSAGES_EXAMPLES),
)
FIELDS = [(d, name) for d in DIRECTIONS for name in d.table]


def _id(value: Any) -> str:
    """A stable test id (parallel runs compare ids across processes): a set is "fields"."""
    return value.name if isinstance(value, Direction) else "fields" if isinstance(value, set) else str(value)


@pytest.mark.parametrize("direction", DIRECTIONS, ids=_id)
def test_every_table_field_has_an_example_and_every_example_a_rule(direction: Direction) -> None:
    assert set(direction.examples) == set(direction.table)


@pytest.mark.parametrize(("direction", "sdk_fields"), [
    (DIRECTIONS[0], set(openai_params.CompletionCreateParamsStreaming.__annotations__)
     | set(openai_params.CompletionCreateParamsBase.__annotations__)),
    (DIRECTIONS[1], set(anthropic_params.MessageCreateParamsStreaming.__annotations__)
     | set(anthropic_params.MessageCreateParamsBase.__annotations__)),
], ids=_id)
def test_every_field_the_official_sdk_sends_is_decided(direction: Direction, sdk_fields: set[str]) -> None:
    """An SDK upgrade that adds a request field fails here until the field gets a rule."""
    assert sdk_fields - set(direction.table) == set()


@pytest.mark.parametrize(("direction", "name"), FIELDS, ids=_id)
def test_field_is_handled_as_the_table_says(direction: Direction, name: str) -> None:
    rule, example = direction.table[name], direction.examples[name]
    body = {**direction.base, **example.extra, name: example.value}
    if rule.action is Action.REFUSE:
        with pytest.raises(TranslationError) as caught:
            direction.translate(body)
        assert caught.value.field == name
        assert f"'{name}'" in str(caught.value) and direction.provider in str(caught.value)
        return
    out = direction.translate(body)
    direction.validate(out)
    if rule.action is Action.IGNORE:
        assert out == direction.translate({**direction.base, **example.extra})
        return
    assert example.expect, f"a translated field needs an expectation: {name}"
    for key, expected in example.expect.items():
        if expected is ABSENT:
            assert key not in out
        else:
            assert out.get(key) == expected, key


@pytest.mark.parametrize(("direction", "name"), [(d, n) for d, n in FIELDS if d.table[n].neutral], ids=_id)
def test_a_refused_field_at_its_neutral_value_changes_nothing(direction: Direction, name: str) -> None:
    baseline = direction.translate(dict(direction.base))
    for value in direction.table[name].neutral:
        assert direction.translate({**direction.base, name: value}) == baseline


@pytest.mark.parametrize(("name", "value"), [("n", True), ("logprobs", 0), ("frequency_penalty", False)])
def test_a_bool_never_passes_for_a_neutral_number_or_the_reverse(name: str, value: Any) -> None:
    with pytest.raises(TranslationError):
        chat_request_to_messages({"model": "gpt", "messages": [USER], name: value}, "c")


@pytest.mark.parametrize(("direction", "name"), FIELDS, ids=_id)
def test_null_means_not_given(direction: Direction, name: str) -> None:
    if name in ("model", "messages", "max_tokens"):
        return  # required: null is the client's error, not "not given"
    assert direction.translate({**direction.base, name: None}) == direction.translate(dict(direction.base))


@pytest.mark.parametrize("direction", DIRECTIONS, ids=_id)
@pytest.mark.parametrize("name", ["frobnicate", "betas", "fallbacks", "response_format_v2"])
def test_an_unknown_field_is_refused_by_name(direction: Direction, name: str) -> None:
    if name in direction.table:
        return
    with pytest.raises(TranslationError) as caught:
        direction.translate({**direction.base, name: "x"})
    assert caught.value.field == name and f"unknown field '{name}'" in str(caught.value)
    assert direction.provider in str(caught.value)


def test_every_rule_says_why() -> None:
    for direction in DIRECTIONS:
        for name, rule in direction.table.items():
            assert len(rule.reason) > 10, (direction.name, name)
            assert not rule.neutral or rule.action is Action.REFUSE, (direction.name, name)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 5) | st.floats(-1, 3) | st.sampled_from(
    ["", "x", "low", "auto", "text", "medium", "json_object"]), lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["type", "name", "user_id", "schema", "effort"]), inner, max_size=3), max_leaves=6)


@pytest.mark.parametrize("direction", DIRECTIONS, ids=_id)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_no_body_gets_through_with_a_refused_or_unknown_field(direction: Direction, data: st.DataObject) -> None:
    """Whatever a client sends, a translated request holds no field that was refused or undecided."""
    names = st.sampled_from([*direction.table, "unknown_field"])
    fields = data.draw(st.dictionaries(names, JSON_VALUES, max_size=5))
    body = {**direction.base, **{k: v for k, v in fields.items() if k not in ("messages", "model", "max_tokens")}}
    try:
        direction.translate(body)
    except TranslationError as exc:
        assert exc.field is not None
        return
    except (AttributeError, TypeError, ValueError, KeyError, IndexError):
        return  # a value of a shape the translator did not expect: the gateway answers 400 too
    for name, value in body.items():
        rule = direction.table.get(name)
        assert rule is not None, name
        assert value is None or rule.action is not Action.REFUSE or value in rule.neutral, (name, value)
