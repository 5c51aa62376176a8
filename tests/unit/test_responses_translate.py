"""The Responses API translations (pure): requests to chat completions, chat completions and
their streams back to responses and typed events, the Anthropic extras, the passthrough
stream relay, the token-count estimate and the response directory."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.config import ConfigError, settings_from_dict
from tollway.config.schema import ProviderSettings
from tollway.providers._chat_options_to_messages import EFFORT_BUDGET
from tollway.providers._chat_response_to_responses import chat_response_to_responses
from tollway.providers._chat_stream_to_responses import ChatStreamToResponses
from tollway.providers._responses_request_to_chat import responses_request_to_chat
from tollway.providers._translate_common import FORMAT_TOOL, TranslationError
from tollway.providers.anthropic_translate import chat_request_to_messages
from tollway.providers.client import Api, ProviderClient
from tollway.providers.sse import SSEParser
from tollway.proxy.response_directory import ResponseDirectory, ResponseOwner
from tollway.proxy.responses_exchanges import _ResponsesStream, passes_through
from tollway.proxy.token_count import estimated_input_tokens
from tollway.testing import mock_responses_build as build

WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


def to_chat(**body: Any) -> dict[str, Any]:
    return responses_request_to_chat(body, "local")


# --- requests ----------------------------------------------------------------------------------

def test_instructions_and_string_input_become_system_and_user_messages() -> None:
    chat = to_chat(input="Hi", instructions="Be brief.", max_output_tokens=7, temperature=0.2, user="u1")
    assert chat == {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                    "max_tokens": 7, "temperature": 0.2, "user": "u1"}


def test_items_become_messages_with_tool_calls_on_the_assistant_turn() -> None:
    chat = to_chat(input=[
        {"role": "developer", "content": "Rules"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather "},
                                                         {"type": "input_text", "text": "in Paris?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city":"Lyon"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "Rain"}]},
    ])
    assert chat["messages"] == [
        {"role": "system", "content": "Rules"},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "Rain"},
    ]


def test_images_keep_their_parts_and_tools_format_and_effort_map_to_chat_fields() -> None:
    chat = to_chat(
        input=[{"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                            {"type": "input_image", "image_url": "https://x/cat.png"}]}],
        tools=[{**WEATHER, "description": "Weather", "strict": True}], tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False, reasoning={"effort": "high", "summary": "auto"}, stream=True,
        text={"format": {"type": "json_schema", "name": "City", "schema": {"type": "object"}, "strict": True}})
    assert chat["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": "https://x/cat.png",
                                                                                    "detail": "auto"}}
    assert chat["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                               "parameters": WEATHER["parameters"], "strict": True}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False and chat["reasoning_effort"] == "high"
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "City", "schema": {"type": "object"},
                                                                              "strict": True}}
    assert chat["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(("body", "named"), [
    ({"input": "x", "tools": [WEATHER, {"type": "web_search"}, {"type": "code_interpreter"}]}, "web_search, code_interpreter"),
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "x", "store": True}, "'store'"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"input": "x", "tool_choice": {"type": "web_search"}}, "tool_choice"),
    ({"input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]}, "input[0].content[0]"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
])
def test_what_cannot_be_honoured_is_refused_naming_the_field(body: dict[str, Any], named: str) -> None:
    with pytest.raises(TranslationError) as caught:
        responses_request_to_chat(body, "local")
    assert named in str(caught.value)


def test_store_false_and_absent_state_fields_pass() -> None:
    assert to_chat(input="x", store=False, background=False, previous_response_id=None)["messages"]


# --- on to Anthropic (through the chat → messages translation) ----------------------------------

def messages_for(**body: Any) -> dict[str, Any]:
    return chat_request_to_messages(responses_request_to_chat(body, "anthropic"), "claude")


def test_json_schema_becomes_the_forced_answer_tool_on_anthropic() -> None:
    out = messages_for(input="City?", text={"format": {"type": "json_schema", "name": "City",
                                                        "schema": {"type": "object", "properties": {}}}})
    assert out["tools"][-1]["name"] == FORMAT_TOOL
    assert out["tool_choice"]["type"] == "tool" and out["tool_choice"]["name"] == FORMAT_TOOL


def test_reasoning_effort_becomes_a_thinking_budget_on_anthropic() -> None:
    out = messages_for(input="Think", reasoning={"effort": "high"}, max_output_tokens=40_000)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": EFFORT_BUDGET["high"]}
    assert out["max_tokens"] == 40_000
    assert "thinking" not in messages_for(input="Think", reasoning={"effort": "none"})


def test_anthropic_refusals_name_the_responses_field() -> None:
    with pytest.raises(TranslationError) as caught:
        messages_for(input="x", reasoning={"effort": "low"}, temperature=0.3)
    assert caught.value.field == "temperature"


# --- responses -----------------------------------------------------------------------------------

def chat_completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "created": 5, "model": "m", "choices": [{"index": 0, "message": message,
                                                                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                      "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2}}}


def test_chat_completion_becomes_a_response_with_items_and_usage() -> None:
    tool_call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    out = chat_response_to_responses(chat_completion({"role": "assistant", "content": "Looking", "tool_calls": [tool_call]},
                                                     "tool_calls"), "m")
    assert out["object"] == "response" and out["id"].startswith("resp_") and out["status"] == "completed"
    assert [item["type"] for item in out["output"]] == ["message", "function_call"]
    assert out["output"][0]["content"][0]["text"] == "Looking"
    assert out["output"][1]["call_id"] == "call_1" and out["output"][1]["name"] == "get_weather"
    assert out["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": 4,
                            "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 14}


def test_a_capped_answer_is_incomplete() -> None:
    capped = chat_response_to_responses(chat_completion({"role": "assistant", "content": "tok0"}, "length"), "m")
    assert capped["status"] == "incomplete" and capped["incomplete_details"] == {"reason": "max_output_tokens"}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c", "choices": choices, **({"usage": usage} if usage else {})}


def test_chat_stream_becomes_typed_events_in_order() -> None:
    translator = ChatStreamToResponses("m")
    chunks = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
              chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
              chunk({}, "tool_calls"), chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 2})]
    events = [event for c in chunks for event in translator.feed(c)] + translator.finish()
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [payload["sequence_number"] for _, payload in events] == list(range(len(events)))
    final = events[-1][1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert (final["output"][1]["arguments"], final["output"][1]["call_id"]) == ('{"a":1}', "call_1")
    assert final["usage"]["input_tokens"] == 3 and final["usage"]["output_tokens"] == 2
    assert translator.usage is not None and translator.usage.total_tokens == 5


# --- the passthrough relay ------------------------------------------------------------------------

def mock_stream(max_output_tokens: int = 5) -> bytes:
    body = {"model": "m", "input": "Hi", "max_output_tokens": max_output_tokens, "reasoning": {"effort": "low"}}
    return b"".join(build.stream_events(build.answer(body, 1, 16, 2, 0)))


@given(st.lists(st.integers(min_value=1, max_value=400), max_size=40))
def test_passthrough_relays_every_byte_whole_events_only_and_reads_usage(cuts: list[int]) -> None:
    data = mock_stream()
    relay = _ResponsesStream()
    pieces, offset = [], 0
    for cut in cuts:
        pieces.append(data[offset:offset + cut])
        offset += cut
    pieces.append(data[offset:])
    out = [relay.feed(piece) for piece in pieces] + [relay.finish()]
    assert b"".join(out) == data
    assert all(piece == b"" or piece.endswith(b"\n\n") for piece in out)  # never half an event
    assert relay.usage is not None
    assert (relay.usage.prompt_tokens, relay.usage.completion_tokens, relay.usage.cached_tokens,
            relay.usage.reasoning_tokens) == (4, 13, 2, 8)
    assert relay.produced == 5 and relay.error is None


def test_passthrough_notes_an_error_event_and_its_own_error_event_parses() -> None:
    relay = _ResponsesStream()
    relay.feed(b'event: error\ndata: {"type":"error","code":"server_error","message":"boom","sequence_number":3}\n\n')
    assert relay.error == "boom"
    event = SSEParser().feed(relay.error_event("cut"))[0]
    assert event.event == "error" and orjson.loads(event.data)["message"] == "cut"


# --- token counting and the directory --------------------------------------------------------------

def test_the_estimate_bounds_the_count_from_above() -> None:
    text = "Grüße, 世界! " * 20
    body = {"messages": [{"role": "user", "content": text},
                         {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image", "source": {}}]}],
            "system": "Be brief.", "tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    estimate = estimated_input_tokens(body)
    assert estimate >= 2 * len(text.encode()) + 1600 + len(b"Be brief.")
    assert estimated_input_tokens({"messages": [{"role": "user", "content": "a"}]}) >= 1


def test_the_directory_keeps_the_newest_entries_within_its_capacity() -> None:
    directory = ResponseDirectory(capacity=2)
    for name in ("a", "b", "c"):
        directory.note(name, ResponseOwner("openai", "m", None))
    assert directory.get("a") is None and directory.get("c") is not None and len(directory) == 2
    directory.forget("c")
    assert directory.get("c") is None


def test_an_anthropic_provider_cannot_claim_the_responses_api() -> None:
    provider = {"type": "anthropic", "keys": [{"value": "k"}], "responses_api": True}
    with pytest.raises(ConfigError, match="responses_api"):
        settings_from_dict({"providers": {"claude": provider}})
    settings = settings_from_dict({"providers": {"local": {"type": "openai", "keys": [{"value": "k"}],
                                                           "responses_api": False}}})
    assert settings.providers["local"].responses_api is False


@pytest.mark.parametrize(("provider", "passes"), [
    ({"type": "openai"}, True), ({"type": "azure", "base_url": "https://x.openai.azure.com", "api_version": "v"}, True),
    ({"type": "openai", "responses_api": False}, False), ({"type": "groq"}, False),
    ({"type": "groq", "responses_api": True}, True), ({"type": "anthropic"}, False),
])
async def test_which_providers_pass_the_responses_api_through(provider: dict[str, Any], passes: bool) -> None:
    settings = ProviderSettings.model_validate({**provider, "keys": [{"value": "k"}]})
    client = ProviderClient("p", settings, [])
    try:
        assert passes_through(client) is passes
        assert client.speaks(Api.RESPONSES) is passes
    finally:
        await client.close()
