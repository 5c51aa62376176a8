"""OpenAI chat ⇄ Anthropic messages: requests and non-streaming responses.

Outputs are checked against expected dicts, against the SDKs' own types (requests through
their TypedDicts, responses through their pydantic models) and by round trips.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from anthropic.types import Message
from anthropic.types.message_create_params import MessageCreateParams
from openai.types.chat import ChatCompletion
from openai.types.chat.completion_create_params import CompletionCreateParams
from pydantic import TypeAdapter

from tollway.providers.anthropic_translate import (
    TranslationError,
    chat_request_to_messages,
    chat_response_to_messages,
    messages_request_to_chat,
    messages_response_to_chat,
)

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
EMPTY_SCHEMA = {"type": "object", "properties": {}}
PNG = "iVBORw0KGgo="

# One conversation in both shapes; each translates exactly into the other.
CHAT_BODY: dict[str, Any] = {
    "model": "claude-x",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        {"role": "user", "content": "Thanks. And tomorrow?"},
    ],
    "tools": [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA, "description": "Weather"}},
        {"type": "function", "function": {"name": "get_time", "parameters": EMPTY_SCHEMA}},
    ],
    "tool_choice": "auto",
    "max_tokens": 100,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": ["END"],
    "user": "u-1",
}
MESSAGES_BODY: dict[str, Any] = {
    "model": "claude-x",
    "max_tokens": 100,
    "system": "Be brief.",
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
            {"type": "text", "text": "Thanks. And tomorrow?"},
        ]},
    ],
    "tools": [
        {"name": "get_weather", "input_schema": WEATHER_SCHEMA, "description": "Weather"},
        {"name": "get_time", "input_schema": EMPTY_SCHEMA},
    ],
    "tool_choice": {"type": "auto"},
    "temperature": 0.5,
    "top_p": 0.9,
    "stop_sequences": ["END"],
    "metadata": {"user_id": "u-1"},
}


def _force(value: Any) -> Any:
    """Walk a validated value, consuming the iterables pydantic validates lazily."""
    if isinstance(value, dict):
        return {k: _force(v) for k, v in value.items()}
    if isinstance(value, list | tuple | Iterator):
        return [_force(v) for v in value]
    return value


# Kept alive for the whole module: pydantic-core's lazy iterators need their adapter.
MESSAGES_REQUEST: TypeAdapter[Any] = TypeAdapter(MessageCreateParams)
CHAT_REQUEST: TypeAdapter[Any] = TypeAdapter(CompletionCreateParams)


def valid_messages_request(body: dict[str, Any]) -> Any:
    return _force(MESSAGES_REQUEST.validate_python(body))


def valid_chat_request(body: dict[str, Any]) -> Any:
    return _force(CHAT_REQUEST.validate_python(body))


@pytest.mark.parametrize(("validate", "body"), [
    (valid_messages_request, {**MESSAGES_BODY, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "http"}}]}]}),
    (valid_messages_request, {**MESSAGES_BODY, "tool_choice": {"type": "required"}}),
    (valid_chat_request, {**CHAT_BODY, "messages": [{"role": "tool", "content": "no id"}]}),
])
def test_request_validators_reject_malformed_bodies(validate: Any, body: dict[str, Any]) -> None:
    """The SDK-type checks used below can fail: they are not vacuous."""
    with pytest.raises(ValueError):
        validate(body)


def chat_with(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "gpt", "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


# ---- chat request → messages request ---------------------------------------------------

def test_conversation_with_tools_translates_to_the_messages_shape() -> None:
    out = chat_request_to_messages(CHAT_BODY, "claude-x")
    assert out == MESSAGES_BODY
    valid_messages_request(out)


def test_conversation_round_trips_through_messages_and_back() -> None:
    assert messages_request_to_chat(chat_request_to_messages(CHAT_BODY, "claude-x")) == CHAT_BODY


@pytest.mark.parametrize(("body", "expected"), [
    (chat_with({"role": "system", "content": "A"}, {"role": "developer", "content": [{"type": "text", "text": "B"}]},
               user("hi")),
     {"system": "A\n\nB", "messages": [user("hi")]}),
    (chat_with({"role": "system", "content": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]},
               user("hi")),
     {"system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}], "messages": [user("hi")]}),
    (chat_with(user([{"type": "text", "text": "what?"},
                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                     {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}])),
     {"messages": [user([{"type": "text", "text": "what?"},
                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                         {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}])]}),
    (chat_with(user([{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"}}])),
     {"messages": [user([{"type": "document",
                          "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}])]}),
    (chat_with(user("a"), user("b"), {"role": "assistant", "content": ""}, user([{"type": "text", "text": "c"}])),
     {"messages": [user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}, {"type": "text", "text": "c"}])]}),
    (chat_with(user("q"), {"role": "assistant", "content": [{"type": "text", "text": "Let me check."}], "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "done"}]}),
     {"messages": [user("q"),
                   {"role": "assistant", "content": [{"type": "text", "text": "Let me check."},
                                                     {"type": "tool_use", "id": "c1", "name": "f", "input": {}}]},
                   user([{"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "done"}]}])]}),
    (chat_with(user("hi"), {"role": "assistant", "content": "Hello"}), {"messages": [user("hi"),
                                                                               {"role": "assistant", "content": "Hello"}]}),
    (chat_with(user("x")), {"max_tokens": 4096}),
    (chat_with(user("x"), max_tokens=10), {"max_tokens": 10}),
    (chat_with(user("x"), max_tokens=10, max_completion_tokens=20), {"max_tokens": 20}),
    (chat_with(user("x"), temperature=0.7, stop="STOP", n=1, seed=None, logprobs=False),
     {"temperature": 0.7, "stop_sequences": ["STOP"]}),
    (chat_with(user("x"), stream=True, stream_options={"include_usage": True}), {"stream": True}),
])
def test_chat_request_fields_translate(body: dict[str, Any], expected: dict[str, Any]) -> None:
    out = chat_request_to_messages(body, "claude-x")
    valid_messages_request(out)
    assert {k: out.get(k) for k in expected} == expected
    assert not {"n", "seed", "logprobs", "stream_options", "stop", "user"} & out.keys()


def test_default_max_tokens_is_configurable() -> None:
    assert chat_request_to_messages(chat_with(user("x")), "c", default_max_tokens=77)["max_tokens"] == 77


@pytest.mark.parametrize(("tool_choice", "parallel", "expected"), [
    (None, None, None),
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
])
def test_tool_choice_translates(tool_choice: Any, parallel: Any, expected: Any) -> None:
    body = chat_with(user("x"), tools=CHAT_BODY["tools"], tool_choice=tool_choice, parallel_tool_calls=parallel)
    out = chat_request_to_messages(body, "c")
    valid_messages_request(out)
    assert out.get("tool_choice") == expected


@pytest.mark.parametrize(("body", "message"), [
    (chat_with(user("x"), n=2), "field 'n' .* Anthropic"),
    (chat_with(user([{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}])), "input_audio"),
    (chat_with(user([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}])), "http"),
    (chat_with(user([{"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}])), "base64"),
    (chat_with(user([{"type": "file", "file": {"file_id": "file-1"}}])), "file_data"),
    (chat_with({"role": "function", "name": "f", "content": "x"}), "role 'function'"),
    (chat_with({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}),
     "not valid JSON"),
    (chat_with({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}),
     "JSON object"),
    (chat_with({"role": "tool", "content": "x"}), "tool_call_id"),
    (chat_with(user("x"), tools=[{"type": "custom", "custom": {"name": "grammar"}}]), "function tools"),
    (chat_with(user("x"), tools=CHAT_BODY["tools"], tool_choice={"type": "allowed_tools"}), "tool_choice"),
    (chat_with(), "non-empty"),
])
def test_untranslatable_chat_requests_raise_with_a_reason(body: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError, match=message):
        chat_request_to_messages(body, "c")


def test_translation_error_is_a_value_error_and_the_input_is_not_mutated() -> None:
    assert issubclass(TranslationError, ValueError)
    body = copy.deepcopy(CHAT_BODY)
    chat_request_to_messages(body, "c")
    messages_request_to_chat(copy.deepcopy(MESSAGES_BODY))
    assert body == CHAT_BODY


# ---- messages request → chat request ---------------------------------------------------

def test_messages_request_translates_to_the_chat_shape() -> None:
    out = messages_request_to_chat({**MESSAGES_BODY, "stream": True})
    assert out == {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
    valid_chat_request(out)


def test_messages_request_round_trips_through_chat_and_back() -> None:
    assert chat_request_to_messages(messages_request_to_chat(MESSAGES_BODY), "claude-x") == MESSAGES_BODY


def messages_with(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 5, "messages": list(messages), **fields}


@pytest.mark.parametrize(("body", "expected"), [
    (messages_with(user("hi"), system=[{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                                       {"type": "text", "text": "B"}]),
     {"messages": [{"role": "system", "content": "A\n\nB"}, user("hi")]}),
    (messages_with(user([{"type": "text", "text": "see"},
                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                         {"type": "image", "source": {"type": "url", "url": "https://e.com/a.png"}}])),
     {"messages": [user([{"type": "text", "text": "see"},
                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                         {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}}])]}),
    (messages_with(user([{"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                         "data": "JVBE"}, "title": "r.pdf"}])),
     {"messages": [user([{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE",
                                                   "filename": "r.pdf"}}])]}),
    (messages_with(user("q"), {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "A"},
        {"type": "text", "text": "B"}]},
        user([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r1"},
                                                                      {"type": "text", "text": "r2"}]}])),
     {"messages": [user("q"), {"role": "assistant", "content": "AB"},
                   {"role": "tool", "tool_call_id": "t", "content": "r1r2"}]}),
    (messages_with(user([{"type": "tool_result", "tool_use_id": "t1", "content": "r"}, {"type": "text", "text": "and"},
                         {"type": "image", "source": {"type": "url", "url": "https://e.com/b.png"}}])),
     {"messages": [{"role": "tool", "tool_call_id": "t1", "content": "r"},
                   user([{"type": "text", "text": "and"},
                         {"type": "image_url", "image_url": {"url": "https://e.com/b.png"}}])]}),
    (messages_with(user("x"), tools=MESSAGES_BODY["tools"], tool_choice={"type": "any", "disable_parallel_tool_use": True}),
     {"tool_choice": "required", "parallel_tool_calls": False}),
    (messages_with(user("x"), tools=MESSAGES_BODY["tools"], tool_choice={"type": "tool", "name": "get_time"}),
     {"tool_choice": {"type": "function", "function": {"name": "get_time"}}}),
    (messages_with(user("x"), tools=MESSAGES_BODY["tools"], tool_choice={"type": "none"}), {"tool_choice": "none"}),
    (messages_with(user("x"), thinking={"type": "enabled", "budget_tokens": 1024}),
     {"max_completion_tokens": 5, "reasoning_effort": "low", "model": "m"}),
])
def test_messages_request_fields_translate(body: dict[str, Any], expected: dict[str, Any]) -> None:
    out = messages_request_to_chat(body)
    valid_chat_request(out)
    assert {k: out.get(k) for k in expected} == expected
    assert not {"top_k", "thinking", "system", "stop_sequences", "metadata"} & out.keys()


@pytest.mark.parametrize(("body", "message"), [
    (messages_with(user("x"), tools=[{"type": "web_search_20250305", "name": "web_search"}]), "server tools"),
    (messages_with(user([{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}])), "only text"),
    (messages_with(user([{"type": "image", "source": {"type": "file", "file_id": "f"}}])), "base64 and url"),
    (messages_with(user([{"type": "search_result", "source": "s", "title": "t", "content": []}])), "search_result"),
    (messages_with({"role": "system", "content": "x"}), "role"),
])
def test_untranslatable_messages_requests_raise_with_a_reason(body: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError, match=message):
        messages_request_to_chat(body)


# ---- responses ---------------------------------------------------------------------------

ANTHROPIC_RESPONSE: dict[str, Any] = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
    "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5},
}


def test_messages_response_becomes_a_chat_completion() -> None:
    out = messages_response_to_chat(ANTHROPIC_RESPONSE, "alias", created=1_700_000_000)
    completion = ChatCompletion.model_validate(out)
    assert completion.id == "msg_1" and completion.model == "alias" and completion.created == 1_700_000_000
    message = completion.choices[0].message
    assert message.content == "Checking."
    assert message.model_dump(exclude_none=True)["tool_calls"] == [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (115, 7, 122)
    assert completion.usage.prompt_tokens_details.cached_tokens == 100


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("model_context_window_exceeded", "length"), (None, "stop"),
])
def test_stop_reason_maps_to_finish_reason(stop_reason: str | None, finish_reason: str) -> None:
    resp = {**ANTHROPIC_RESPONSE, "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason}
    assert ChatCompletion.model_validate(messages_response_to_chat(resp, "m")).choices[0].finish_reason == finish_reason


def test_tool_only_messages_response_has_null_content() -> None:
    resp = {**ANTHROPIC_RESPONSE, "content": ANTHROPIC_RESPONSE["content"][1:]}
    assert messages_response_to_chat(resp, "m")["choices"][0]["message"]["content"] is None


def test_chat_response_becomes_an_anthropic_message() -> None:
    chat = messages_response_to_chat(ANTHROPIC_RESPONSE, "claude-x", created=1)
    message = Message.model_validate(chat_response_to_messages(chat, "claude-x"))
    assert message.model_dump(exclude_none=True) == Message.model_validate(ANTHROPIC_RESPONSE).model_dump(exclude_none=True)


@pytest.mark.parametrize(("finish_reason", "tool_calls", "stop_reason"), [
    ("stop", False, "end_turn"), ("length", False, "max_tokens"), ("tool_calls", True, "tool_use"),
    ("stop", True, "tool_use"), ("content_filter", False, "refusal"), (None, False, "end_turn"),
])
def test_finish_reason_maps_to_stop_reason(finish_reason: str | None, tool_calls: bool, stop_reason: str) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": "hi"}
    if tool_calls:
        message["tool_calls"] = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    resp = {"id": "x", "object": "chat.completion", "created": 1, "model": "gpt",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]}
    assert Message.model_validate(chat_response_to_messages(resp, "m")).stop_reason == stop_reason


def test_chat_response_usage_and_refusal_translate() -> None:
    resp = {"id": "x", "object": "chat.completion", "created": 1, "model": "gpt",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None,
                                                                          "refusal": "I can't help with that."}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55,
                      "prompt_tokens_details": {"cached_tokens": 20}}}
    message = Message.model_validate(chat_response_to_messages(resp, "m"))
    assert [block.type for block in message.content] == ["text"]
    assert message.usage.input_tokens == 30 and message.usage.output_tokens == 5
    assert message.usage.cache_read_input_tokens == 20


def test_chat_response_with_broken_tool_arguments_raises() -> None:
    resp = {"id": "x", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}]}}]}
    with pytest.raises(TranslationError, match="not valid JSON"):
        chat_response_to_messages(resp, "m")
