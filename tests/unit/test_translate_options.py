"""The request options that take more than a copy to cross APIs: response_format as a
forced tool (and its call back as content, streamed or not), reasoning_effort ⇄ thinking,
the limits each API puts on them, and the model a translated stream reports."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.unit.test_anthropic_translate import (
    valid_chat_request,
    valid_messages_request,
)
from tests.unit.test_anthropic_translate_stream import (
    _delta,
    _start,
    sdk_final_completion,
    sdk_final_message,
)
from tollway.providers.anthropic_translate import (
    ChatStreamToMessages,
    MessagesStreamToChat,
    TranslationError,
    chat_request_to_messages,
    messages_request_to_chat,
    messages_response_to_chat,
    tokens_added_by_thinking,
)
from tollway.providers.field_rules import CHAT_TO_MESSAGES, MESSAGES_TO_CHAT

USER = {"role": "user", "content": "hi"}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city", "days"], "additionalProperties": False}
JSON_SCHEMA = {"type": "json_schema",
               "json_schema": {"name": "forecast", "description": "A forecast", "schema": SCHEMA}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]


def to_claude(**fields: Any) -> dict[str, Any]:
    out = chat_request_to_messages({"model": "gpt", "messages": [USER], **fields}, "claude-x")
    valid_messages_request(out)
    return out


def refused(translate: Any, body: dict[str, Any], field: str) -> str:
    with pytest.raises(TranslationError) as caught:
        translate(body)
    assert caught.value.field == field
    return str(caught.value)


# ---- response_format → a forced tool -----------------------------------------------------

def test_json_schema_becomes_a_forced_tool_with_the_schema_as_input() -> None:
    out = to_claude(response_format={**JSON_SCHEMA, "json_schema": {**JSON_SCHEMA["json_schema"], "strict": True}})
    [tool] = out["tools"]
    assert tool["name"] == "tollway_json_answer" and tool["input_schema"] == SCHEMA and tool["strict"] is True
    assert "forecast" in tool["description"] and "A forecast" in tool["description"]
    assert out["tool_choice"] == {"type": "tool", "name": "tollway_json_answer", "disable_parallel_tool_use": True}


def test_json_object_becomes_a_forced_tool_taking_any_object() -> None:
    out = to_claude(response_format={"type": "json_object"})
    assert out["tools"][0]["input_schema"] == {"type": "object"}
    assert out["tool_choice"]["name"] == "tollway_json_answer"


def test_text_format_changes_nothing() -> None:
    assert to_claude(response_format={"type": "text"}) == to_claude()


@pytest.mark.parametrize(("tool_choice", "expected_choice", "format_tool"), [
    (None, {"type": "any"}, True),  # answer with a tool, or with the JSON
    ("auto", {"type": "any"}, True),
    ("none", {"type": "tool", "name": "tollway_json_answer", "disable_parallel_tool_use": True}, True),
    ("required", {"type": "any"}, False),  # the client forces a tool call: the format does not apply
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}, False),
])
def test_response_format_with_the_clients_tools(tool_choice: Any, expected_choice: Any, format_tool: bool) -> None:
    out = to_claude(response_format=JSON_SCHEMA, tools=TOOLS, tool_choice=tool_choice)
    assert out["tool_choice"] == expected_choice
    assert [t["name"] for t in out["tools"]] == ["get_weather", "tollway_json_answer"][:2 if format_tool else 1]


@pytest.mark.parametrize(("response_format", "tools", "field", "fragment"), [
    (JSON_SCHEMA, [{"type": "function", "function": {"name": "tollway_json_answer"}}], "tools", "reserved"),
    (None, [{"type": "function", "function": {"name": "tollway_json_answer"}}], "tools", "reserved"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}, None, "response_format",
     "object"),
    ({"type": "json_schema", "json_schema": {"schema": SCHEMA}}, None, "response_format", "name"),
    ({"type": "grammar", "grammar": "x"}, None, "response_format", "grammar"),
    ("json", None, "response_format", "None"),
])
def test_response_formats_that_cannot_be_expressed_are_refused(response_format: Any, tools: Any, field: str,
                                                               fragment: str) -> None:
    body = {"model": "gpt", "messages": [USER], "response_format": response_format, "tools": tools}
    assert fragment in refused(lambda b: chat_request_to_messages(b, "c"), body, field)


ANSWER = {"city": "Paris", "days": 3}


def test_the_format_tool_call_comes_back_as_the_message_content() -> None:
    resp = {"id": "msg_1", "model": "claude-x-2025", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "tollway_json_answer", "input": ANSWER}],
            "usage": {"input_tokens": 5, "output_tokens": 7}}
    chat = messages_response_to_chat(resp, "claude-x-2025")
    message, finish = chat["choices"][0]["message"], chat["choices"][0]["finish_reason"]
    assert orjson.loads(message["content"]) == ANSWER and "tool_calls" not in message and finish == "stop"
    cut = messages_response_to_chat({**resp, "stop_reason": "max_tokens"}, "m")
    assert cut["choices"][0]["finish_reason"] == "length"


def test_a_real_tool_call_beside_the_format_tool_keeps_finish_reason_tool_calls() -> None:
    resp = {"id": "m", "stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris", "days": 1}}]}
    chat = messages_response_to_chat(resp, "m")
    assert chat["choices"][0]["finish_reason"] == "tool_calls"


FORMAT_STREAM: list[dict[str, Any]] = [
    _start("msg_9", {"input_tokens": 10, "output_tokens": 1}),
    {"type": "content_block_start", "index": 0,
     "content_block": {"type": "tool_use", "id": "toolu_9", "name": "tollway_json_answer", "input": {}}},
    _delta(0, "input_json_delta", partial_json='{"city": "Pa'),
    _delta(0, "input_json_delta", partial_json='ris", "days": 3}'),
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
]


def test_the_format_tool_call_streams_as_content_under_the_answering_model() -> None:
    translator = MessagesStreamToChat("anthropic/alias", True, created=1)
    chunks = [chunk for event in FORMAT_STREAM for chunk in translator.feed(event["type"], event)]
    completion = sdk_final_completion(chunks)
    assert orjson.loads(completion.choices[0].message.content or "") == ANSWER
    assert not completion.choices[0].message.tool_calls and completion.choices[0].finish_reason == "stop"
    assert {chunk["model"] for chunk in chunks} == {"claude"}  # message_start's model, not the client's alias


def test_chat_stream_reports_the_model_of_its_first_chunk_else_the_fallback() -> None:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06",
             "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]}
    translator = ChatStreamToMessages("openai/alias")
    assert sdk_final_message(translator.feed(chunk) + translator.finish()).model == "gpt-4o-2024-08-06"
    bare = ChatStreamToMessages("fallback")
    assert bare.finish()[0][1]["message"]["model"] == "fallback"


def test_a_first_chunk_without_a_model_does_not_start_the_message() -> None:
    """Azure streams prompt_filter_results first, with no model and no choices."""
    translator = ChatStreamToMessages("azure/alias")
    assert translator.feed({"id": "", "model": "", "choices": [], "prompt_filter_results": []}) == []
    chunk = {"id": "c", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "x"}}]}
    [(name, data), *_] = translator.feed(chunk)
    assert name == "message_start" and data["message"]["model"] == "gpt-4o-mini" and data["message"]["id"] == "c"


# ---- reasoning_effort → thinking ---------------------------------------------------------

@pytest.mark.parametrize(("effort", "budget"), [
    ("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384), ("xhigh", 24576), ("max", 32000)])
def test_reasoning_effort_becomes_a_thinking_budget_below_max_tokens(effort: str, budget: int) -> None:
    out = to_claude(reasoning_effort=effort, max_completion_tokens=1000)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] == 1000 + budget > budget  # raised: Anthropic requires budget < max_tokens


def test_a_max_above_the_budget_is_kept_since_both_apis_count_reasoning_in_it() -> None:
    assert to_claude(reasoning_effort="low", max_completion_tokens=30000)["max_tokens"] == 30000


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh", "max", "bogus", None, 3])
@pytest.mark.parametrize("limit", [None, 1, 1024, 2048, 2049, 8192, 40000])
def test_the_tokens_thinking_adds_are_known_before_translating(effort: Any, limit: int | None) -> None:
    """What the gateway reserves for a request matches what the translation sends."""
    body = {"model": "gpt", "messages": [USER], "reasoning_effort": effort, "max_completion_tokens": limit}
    try:
        sent = chat_request_to_messages(body, "c")["max_tokens"]
    except TranslationError:
        sent = 4096 if limit is None else limit  # refused: nothing is sent, nothing added
    assert tokens_added_by_thinking(body, limit) == sent - (4096 if limit is None else limit)


def test_reasoning_effort_none_asks_for_no_thinking() -> None:
    assert to_claude(reasoning_effort="none") == to_claude()


@pytest.mark.parametrize(("fields", "field"), [
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"reasoning_effort": "low", "temperature": 0.2}, "temperature"),
    ({"reasoning_effort": "low", "top_p": 0.5}, "top_p"),
    ({"reasoning_effort": "low", "tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
    ({"reasoning_effort": "low", "response_format": JSON_SCHEMA}, "response_format"),
    ({"reasoning_effort": "low", "response_format": JSON_SCHEMA, "tools": TOOLS}, "response_format"),
])
def test_what_claude_cannot_do_while_thinking_is_refused(fields: dict[str, Any], field: str) -> None:
    body = {"model": "gpt", "messages": [USER], **fields}
    message = refused(lambda b: chat_request_to_messages(b, "c"), body, field)
    assert "Anthropic" in message or field == "reasoning_effort"


def test_reasoning_cannot_continue_a_tool_call_whose_thinking_the_chat_format_lost() -> None:
    called = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}
    loop = [USER, called, {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    body = {"model": "gpt", "messages": loop, "tools": TOOLS, "reasoning_effort": "low"}
    assert "thinking blocks" in refused(lambda b: chat_request_to_messages(b, "c"), body, "reasoning_effort")
    after = [*loop, {"role": "assistant", "content": "It is sunny."}, USER]  # a new turn: thinking is fine again
    assert chat_request_to_messages({**body, "messages": after}, "c")["thinking"]["budget_tokens"] == 2048


def test_thinking_allows_temperature_1_and_a_high_top_p() -> None:
    assert to_claude(reasoning_effort="low", temperature=1, top_p=0.95)["thinking"]["budget_tokens"] == 2048


@pytest.mark.parametrize("temperature", [1.01, 2, -0.1, "hot"])
def test_temperature_outside_anthropics_range_is_refused_not_clamped(temperature: Any) -> None:
    body = {"model": "gpt", "messages": [USER], "temperature": temperature}
    refused(lambda b: chat_request_to_messages(b, "c"), body, "temperature")


@pytest.mark.parametrize(("tier", "ok"), [("auto", "auto"), ("default", "standard_only"), ("flex", None),
                                          ("priority", None), ("scale", None)])
def test_service_tier_maps_or_is_refused(tier: str, ok: str | None) -> None:
    if ok is None:
        refused(lambda b: chat_request_to_messages(b, "c"), {"model": "g", "messages": [USER], "service_tier": tier},
                "service_tier")
    else:
        assert to_claude(service_tier=tier)["service_tier"] == ok


# ---- thinking / output_config → reasoning_effort -----------------------------------------

def to_gpt(**fields: Any) -> dict[str, Any]:
    out = messages_request_to_chat({"model": "m", "max_tokens": 100, "messages": [USER], **fields})
    valid_chat_request(out)
    return out


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (2048, "low"), (4096, "medium"), (8192, "medium"),
                                                (16384, "high"), (32000, "high")])
def test_thinking_budget_becomes_the_nearest_effort(budget: int, effort: str) -> None:
    out = to_gpt(thinking={"type": "enabled", "budget_tokens": budget})
    assert out["reasoning_effort"] == effort and out["max_completion_tokens"] == 100 and "max_tokens" not in out


@pytest.mark.parametrize("kind", ["disabled", "adaptive"])
def test_thinking_disabled_or_adaptive_leaves_the_providers_default(kind: str) -> None:
    assert to_gpt(thinking={"type": kind}) == to_gpt()


def test_output_config_effort_wins_over_thinking_and_format_becomes_a_strict_schema() -> None:
    out = to_gpt(thinking={"type": "enabled", "budget_tokens": 2048},
                 output_config={"effort": "high", "format": {"type": "json_schema", "schema": SCHEMA}})
    assert out["reasoning_effort"] == "high"
    assert out["response_format"]["json_schema"] == {"name": "answer", "schema": SCHEMA, "strict": True}


@pytest.mark.parametrize(("fields", "field"), [
    ({"thinking": {"type": "enabled"}}, "thinking"),
    ({"thinking": {"type": "between_tools"}}, "thinking"),
    ({"output_config": {"effort": "extreme"}}, "output_config"),
    ({"output_config": {"task_budget": 5}}, "output_config"),
    ({"output_config": {"format": {"type": "regex"}}}, "output_config"),
    ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
    ({"stop_sequences": "a"}, "stop_sequences"),
    ({"metadata": {"user_id": "u", "team": "t"}}, "metadata"),
    ({"service_tier": "priority"}, "service_tier"),
])
def test_options_openai_cannot_take_are_refused(fields: dict[str, Any], field: str) -> None:
    refused(messages_request_to_chat, {"model": "m", "max_tokens": 5, "messages": [USER], **fields}, field)


def test_fields_both_apis_share_are_decided_in_both_directions() -> None:
    """Both directions decide the fields both APIs share (model, messages, tools …)."""
    shared = {"model", "messages", "max_tokens", "temperature", "top_p", "stream", "tools", "tool_choice", "metadata",
              "service_tier"}
    assert shared <= CHAT_TO_MESSAGES.keys() and shared <= MESSAGES_TO_CHAT.keys()


def test_strict_tools_stay_strict_both_ways() -> None:
    strict = [{"type": "function", "function": {"name": "f", "parameters": SCHEMA, "strict": True}}]
    [tool] = to_claude(tools=strict)["tools"]
    assert tool["strict"] is True
    assert to_gpt(tools=[tool])["tools"] == strict
